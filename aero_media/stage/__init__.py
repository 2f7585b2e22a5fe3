"""Staging: copy each arch's selected packages into build/, check the payload pins, validate for Windows 7."""
