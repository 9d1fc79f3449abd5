"""Image decoding, face detection, alignment, skin tone and tone-preserving augmentation.

JAX-free: numpy, OpenCV and onnxruntime only, so training, the embedded runner and the
Triton python models (numpy<2 environment) share one implementation.
"""
