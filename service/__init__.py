"""speakerswitch's service: ``runtime/`` is what a running server imports, ``tools/`` the
offline replay and evaluation tools, ``demo/`` the bundled demo, ``api/`` the modules generated
from proto/, ``client.py`` the Python client and ``cli.py`` the ``speakerswitch`` command over
them all."""
