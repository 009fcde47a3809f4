"""WSGI entry point for any WSGI server: ``novalite.api.wsgi_app:application``.

Reads the configuration file named by NOVALITE_CONFIG_FILE (and NOVALITE_* overrides), as
``novalite api --config-file`` does; ``novalite api`` itself runs gunicorn without this module.
"""

import os

from novalite import config
from novalite.api.app import base_dir_of, create_app

_config_file = os.environ.get("NOVALITE_CONFIG_FILE")
application = create_app(config.load(_config_file), base_dir=base_dir_of(_config_file))
