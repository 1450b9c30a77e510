"""edge-detector: camera and RTSP streams to object detections on an MQTT broker."""

__version__ = "0.1.0"
