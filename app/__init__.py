"""facerec: on-device face recognition for live cameras."""

__version__ = "0.1.0"
APP_NAME = "facerec"
