"""roadseg: real-time driving-scene segmentation, from PyTorch training to an edge video stream."""

import os as _os

__version__ = "0.1.0"

# OpenCV decodes any image whose header claims up to 2^30 pixels: a 700-byte JPEG claiming
# 30000x30000 takes seconds and 5 GB. roadseg lowers the limit to 2^25 pixels (8K UHD fits) unless
# it is set already; OpenCV reads it once, when cv2 is first imported (docs/RELIABILITY.md).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 25))
