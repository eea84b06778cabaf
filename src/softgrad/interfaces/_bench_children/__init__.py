"""Programs that ``softgrad bench`` runs in fresh processes (see :func:`..bench.run_child`).

Each is a module with a ``main()`` that reads ``sys.argv`` and prints one JSON line. They are
run by path (``runpy.run_path``), not imported as ``softgrad.interfaces...``: a child that
measures the import of softgrad must not have imported it before its clock starts.
"""
