"""Contract fakes for hardware that cannot exist on CI machines (TensorRT, pycuda/GPU).

They mirror documented APIs and enforce their contracts; they are not the real libraries.
"""
