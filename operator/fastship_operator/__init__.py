"""fastship's Kubernetes operator: Migration runs database migrations as Jobs, AppConfig
validates and rolls out configuration.

The pure parts (builders of Kubernetes objects, hashing, status computation) live in
:mod:`fastship_operator.migrations`, :mod:`fastship_operator.appconfigs` and
:mod:`fastship_operator.conditions`; :mod:`fastship_operator.handlers` is the thin kopf
layer that talks to the API server.
"""

GROUP = "fastship.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGED_BY = "fastship-operator"
