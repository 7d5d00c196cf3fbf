"""Exporters that write a whole program (architecture and weights), not only weights:
`torch_program` (a torch.export .pt2 that runs with torch alone)."""
