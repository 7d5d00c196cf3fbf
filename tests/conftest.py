import sys
from pathlib import Path

# tests/ holds helper modules (gradcheck, oracle) imported by plain name.
sys.path.insert(0, str(Path(__file__).parent))
