"""How Windows 7 sees a driver package: INF, PE, catalog and certificate readers, and the checks.

Stands alone: it depends only on the arch and device types of :mod:`aero_media.spec`
(and the error types), so ``aero-media check`` can run it on any folder.
"""
