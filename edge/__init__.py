"""edgehemo: blood-cell screening on the microscope's own computer.

The shared core (this package) never imports torch, onnx or TensorFlow; the training, export and
device stages live in the subpackages `edgehemo.train`, `edgehemo.export` and `edgehemo.device`.
"""

__version__ = "0.1.0"
