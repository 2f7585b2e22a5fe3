"""Staging: copy each arch's selected packages into build/, check the payload pins, test-sign when the spec
asks, validate for Windows 7."""
