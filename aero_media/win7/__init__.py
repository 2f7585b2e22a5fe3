"""How Windows 7 sees a driver package: INF, PE, catalog and certificate readers, the checks, and
catalog creation and signing.

Stands alone: it depends only on the arch and device types of :mod:`aero_media.spec`
(and the error types and the table of system programs), so ``aero-media check`` can run
it on any folder. The Windows behaviour it encodes is in docs/windows7.md.
"""
