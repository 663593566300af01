"""What Kubernetes puts in a pod's environment that Provender must live with."""

from __future__ import annotations

# Exactly what Kubernetes injects into every pod of a namespace holding a Service named "provender"
# (and one named "provender-serving") listening on 6566.
KUBERNETES_SERVICE_LINKS = {
    "PROVENDER_SERVICE_HOST": "10.96.0.12",
    "PROVENDER_SERVICE_PORT": "6566",
    "PROVENDER_SERVICE_PORT_HTTP": "6566",
    "PROVENDER_PORT": "tcp://10.96.0.12:6566",
    "PROVENDER_PORT_6566_TCP": "tcp://10.96.0.12:6566",
    "PROVENDER_PORT_6566_TCP_PROTO": "tcp",
    "PROVENDER_PORT_6566_TCP_PORT": "6566",
    "PROVENDER_PORT_6566_TCP_ADDR": "10.96.0.12",
    "PROVENDER_SERVING_SERVICE_HOST": "10.96.0.13",
    "PROVENDER_SERVING_SERVICE_PORT": "6566",
    "PROVENDER_SERVING_PORT": "tcp://10.96.0.13:6566",
    "PROVENDER_SERVING_PORT_6566_TCP": "tcp://10.96.0.13:6566",
    "PROVENDER_SERVING_PORT_6566_TCP_PROTO": "tcp",
    "PROVENDER_SERVING_PORT_6566_TCP_PORT": "6566",
    "PROVENDER_SERVING_PORT_6566_TCP_ADDR": "10.96.0.13",
}
