"""`python -m mnist_sweep.export RUN_DIR`: a run's net as ONNX files (float32, optionally
int8), with its size, its cost per image and each file's measured test accuracy."""
