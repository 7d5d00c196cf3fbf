"""The framework implementations: one Runner per framework (numpy, the reference; torch; raw TF;
raw JAX; Keras in process or in a worker per backend; ONNX Runtime), the modules torch and
Keras need for what they cannot say directly, and how they start."""
