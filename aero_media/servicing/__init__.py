"""Servicing a Windows 7 install ISO on Linux: the building blocks, and the service stage that runs them.

Why each edit is made is in docs/windows7.md (install images to BCD test mode).

* :mod:`.service`: the service stage: copy the WIMs and BCD stores, apply the edits, rebuild, publish one set;

* :mod:`.wim`: ``wimlib-imagex`` — list images, check Windows 7 and arch, extract, update, free space;
* :mod:`.hive`: registry hives through ``hivexregedit`` — typed values, idempotent edits with old/new values;
* :mod:`.certblob`: certificates as CryptoAPI serialized Blobs in an offline machine store;
* :mod:`.bcd`: which BCD objects get ``testsigning``, stored as Windows stores a boolean;
* :mod:`.isorepack`: rebuild the ISO with our writer (its tree as read, UDF kept, El Torito replayed),
  and an El Torito reader of our own;
* :mod:`.edits`: THE table of what goes into each image, expanded for a contract, arch, certificates, options.
* the answer file (``autounattend.xml``) it may place comes from :mod:`aero_media.answer`.

Every external program runs through :mod:`aero_media.systools`, which turns a missing program
or a failure into one line naming the Debian package or the fix.
"""
