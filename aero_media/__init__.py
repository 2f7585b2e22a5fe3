"""aero-virtio-media: turn Windows 7 virtio drivers into install media for the Aero PC emulator."""

__version__ = "0.2.0"
