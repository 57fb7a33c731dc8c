"""A consumer that is not built from the Rust SDK: Python grpcio.

It talks to a running broker three ways and exits non-zero on any mismatch:
1. stubs generated from proto/ with grpc_tools: catalogue, a query checked field by field, and a
   refused query checked for its status code;
2. gRPC health checking (grpc.health.v1), as load balancers and Kubernetes probes do;
3. server reflection only, with no .proto files at all, as grpcurl does.

Usage: plain_client.py --broker HOST:PORT --ca CA.pem --cert CERT.pem --key KEY.pem
                       --proto-dir DIR --expect-json FILE
where FILE holds {"id_number": ..., "name": ..., "birth_date": ...} of one person and CERT is a
consumer certificate whose department the exchange's policy grants name and birth_date of the
household register for "婚姻登记 marriage registration". Every call is mutual TLS.
"""

import argparse
import json
import sys
import tempfile

import grpc
from grpc_tools import protoc


PURPOSE = "婚姻登记 marriage registration"


def generate_stubs(proto_dir: str) -> str:
    out = tempfile.mkdtemp(prefix="huitong-py-")
    import grpc_tools

    well_known = grpc_tools.__path__[0] + "/_proto"
    for name in ("records", "adapter", "exchange", "admin", "audit"):
        rc = protoc.main(
            [
                "protoc",
                f"-I{proto_dir}",
                f"-I{well_known}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                f"{proto_dir}/huitong/v1/{name}.proto",
            ]
        )
        if rc != 0:
            sys.exit(f"protoc failed on {name}.proto")
    sys.path.insert(0, out)
    return out


def check(cond: bool, what: str) -> None:
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def with_stubs(channel, person) -> None:
    from huitong.v1 import exchange_pb2, exchange_pb2_grpc, records_pb2

    stub = exchange_pb2_grpc.ExchangeStub(channel)
    catalogue = stub.ListCatalogue(exchange_pb2.ListCatalogueRequest(), timeout=10)
    resources = {e.resource for e in catalogue.entries}
    check("public-security/household-register" in resources, "catalogue lists the household register")

    # The acting official (the department's own staff id) and the case (办件编号) travel with
    # every query, so that an auditor can ask "which official, for which case".
    req = exchange_pb2.QueryRequest(
        resource="public-security/household-register",
        fields=["name", "birth_date"],
        purpose=PURPOSE,
        official="clerk-0042",
        case_ref="HY-2026-1202-0007",
    )
    req.key["id_number"].CopyFrom(records_pb2.Value(string_value=person["id_number"]))
    answer = stub.Query(req, timeout=10)
    check(len(answer.records) == 1, "query by key returns one record")
    fields = answer.records[0].fields
    check(sorted(fields.keys()) == ["birth_date", "name"], "only the requested fields are released")
    check(fields["name"].string_value == person["name"], "name matches the register")
    d = fields["birth_date"].date_value
    check(f"{d.year:04}-{d.month:02}-{d.day:02}" == person["birth_date"], "birth date matches")
    check(answer.provenance.provider == "public-security", "provenance names the provider")

    bad = exchange_pb2.QueryRequest(resource="public-security/household-register", fields=["name"])
    bad.key["id_number"].CopyFrom(records_pb2.Value(string_value=person["id_number"]))
    try:
        stub.Query(bad, timeout=10)
        check(False, "a query without purpose is refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "missing purpose is INVALID_ARGUMENT")
        check("purpose" in e.details(), "the message says a purpose is missing")


def with_health(channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "huitong.v1.Exchange"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        check(resp.status == health_pb2.HealthCheckResponse.SERVING, f"health of {service!r} is SERVING")


def with_reflection_only(channel, person) -> None:
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    check("huitong.v1.Exchange" in services, "reflection lists huitong.v1.Exchange")
    pool = descriptor_pool.DescriptorPool(db)
    svc = pool.FindServiceByName("huitong.v1.Exchange")
    method = svc.methods_by_name["Query"]
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    value_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("huitong.v1.Value"))
    req = req_cls(resource="public-security/household-register", fields=["name"], purpose=PURPOSE)
    req.key["id_number"].CopyFrom(value_cls(string_value=person["id_number"]))
    call = channel.unary_unary(
        "/huitong.v1.Exchange/Query",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=resp_cls.FromString,
    )
    answer = call(req, timeout=10)
    check(answer.records[0].fields["name"].string_value == person["name"], "a query built from reflection alone works")


def without_client_certificate(broker: str, ca: bytes) -> None:
    from huitong.v1 import exchange_pb2, exchange_pb2_grpc

    creds = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(broker, creds) as channel:
        stub = exchange_pb2_grpc.ExchangeStub(channel)
        try:
            stub.ListCatalogue(exchange_pb2.ListCatalogueRequest(), timeout=10)
            check(False, "a call without a client certificate is refused")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAUTHENTICATED, "no client certificate is UNAUTHENTICATED")
            check("client certificate" in e.details(), "the message asks for a client certificate")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--expect-json", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    with open(args.expect_json, encoding="utf-8") as f:
        person = json.load(f)
    generate_stubs(args.proto_dir)
    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key),
        certificate_chain=read(args.cert),
    )
    with grpc.secure_channel(args.broker, credentials) as channel:
        with_stubs(channel, person)
        with_health(channel)
        with_reflection_only(channel, person)
    without_client_certificate(args.broker, read(args.ca))
    print("all checks passed")


if __name__ == "__main__":
    main()
