"""Server reflection, v1 as well as v1alpha.

grpcio-reflection serves only `grpc.reflection.v1alpha.ServerReflection`; newer tools ask
for `grpc.reflection.v1.ServerReflection` (`buf curl --reflect-protocol grpc-v1`, recent
grpcurl, Postman). The two protocols are the same messages under another package name
(grpc-proto's v1 is v1alpha promoted), so v1 is served by the same servicer with
v1alpha's (de)serializers: the bytes are identical. So that v1 can itself be described
through reflection, its file descriptor is derived from v1alpha's (package renamed) and
added to the default descriptor pool at import, instead of vendoring a second proto.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE = V1_PACKAGE + ".ServerReflection"
V1ALPHA_SERVICE: str = reflection.SERVICE_NAME


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, as v1alpha's descriptor with the package renamed."""
    fdp = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(fdp)
    old = "." + fdp.package + "."
    fdp.name, fdp.package = V1_FILE, V1_PACKAGE
    fdp.options.Clear()
    fdp.options.java_package = "io.grpc.reflection.v1"
    fdp.options.java_multiple_files = True
    fdp.options.java_outer_classname = "ServerReflectionProto"
    for msg in fdp.message_type:
        for field in msg.field:
            if field.HasField("type_name"):  # messages and enums only: scalars have none
                field.type_name = field.type_name.replace(old, "." + V1_PACKAGE + ".")
    for service in fdp.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, "." + V1_PACKAGE + ".")
            method.output_type = method.output_type.replace(old, "." + V1_PACKAGE + ".")
    return fdp


def _register_v1() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file().SerializeToString())


def enable(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection v1alpha and v1 for `service_names` (the reflection services are
    added to the list)."""
    _register_v1()
    names = (*service_names, V1ALPHA_SERVICE, V1_SERVICE)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)  # v1alpha, grpcio-reflection's own
    handler = grpc.method_handlers_generic_handler(V1_SERVICE, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=v1alpha.ServerReflectionRequest.FromString,
            response_serializer=v1alpha.ServerReflectionResponse.SerializeToString)})
    server.add_generic_rpc_handlers((handler,))
