"""Generated protobuf and gRPC modules for ``protos/provender/serving/v1/serving.proto``."""
