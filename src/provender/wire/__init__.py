"""What travels between the services and their remote clients, below both.

``errors.py`` (error statuses, and errors' fields there and back), ``codec.py`` (feature
values as JSON and as typed protobuf columns) and ``_proto/`` (the generated gRPC code of
``protos/provender/serving/v1/serving.proto``). The client, the serving service and the core
service import this package; it imports none of them.
"""
