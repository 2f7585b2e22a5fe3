"""``autounattend.xml``: written on request for the serviced ISO and the drivers ISO, checked against our own schema.

Below both media and servicing, which each place one: :mod:`.answerfile` writes and checks it,
``unattend.xsd`` (with ``wcm.xsd``) is the schema, from Microsoft's Unattended Windows Setup Reference.
"""
