"""roadseg: real-time driving-scene segmentation, from PyTorch training to an edge video stream."""

__version__ = "0.1.0"
