"""A Huitong adapter in Python (grpcio): social insurance's register of pension recipients.

It serves the `huitong.v1.Adapter` service from proto/ with the same contract as the Rust
reference adapter (crates/huitong-adapter/src/server.rs): mutual TLS with the exchange CA, only
the broker may call, every request is checked against the resource description before any
record is read, answers carry only the fields asked for, searches page with stable tokens, and
WatchChanges streams the register's changes from an in-memory list.

Stubs are generated from proto/ into a temporary directory at start, so nothing generated is
ever committed. See README.md in this folder for how to run it and check it.
"""

import argparse
import atexit
import datetime
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the reference adapter's default max_message_bytes
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Changes kept for WatchChanges; a cursor older than these is OUT_OF_RANGE.
RETAINED_CHANGES = 10_000


def generate_stubs(proto_dir):
    """Compiles records.proto and adapter.proto into a temporary package on sys.path."""
    import grpc_tools

    out = tempfile.mkdtemp(prefix="huitong-py-adapter-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    well_known = os.path.join(grpc_tools.__path__[0], "_proto")
    for name in ("records", "adapter"):
        rc = protoc.main(
            [
                "protoc",
                f"-I{proto_dir}",
                f"-I{well_known}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                os.path.join(proto_dir, "huitong", "v1", f"{name}.proto"),
            ]
        )
        if rc != 0:
            sys.exit(f"error: protoc failed on {name}.proto in {proto_dir}")
    sys.path.insert(0, out)


# --- the resource, as this department describes it -------------------------------------------

DEPT = "social-insurance"
RESOURCE = "pension-recipients"
# (name, type, sensitivity, description); types and sensitivities are the proto enum suffixes.
FIELDS = [
    ("pension_no", "STRING", "INTERNAL", "养老金账号 pension account number"),
    ("id_number", "STRING", "PERSONAL", "公民身份号码 citizen ID number"),
    ("name", "STRING", "PERSONAL", "姓名 name"),
    ("birth_date", "DATE", "PERSONAL", "出生日期 date of birth"),
    ("monthly_amount", "DOUBLE", "PERSONAL", "月养老金（元） monthly pension in yuan"),
    ("contribution_years", "INT", "PERSONAL", "缴费年限 years of contributions"),
    ("status", "STRING", "PERSONAL", "领取状态 receiving, suspended"),
    ("alive_verified", "BOOL", "PERSONAL", "本年度已完成领取资格认证 proof of life this year"),
    ("verified_at", "TIMESTAMP", "PERSONAL", "认证时间 when the proof of life was recorded"),
]
KEY_FIELDS = ["pension_no"]
FIELD_TYPES = {name: ty for name, ty, _, _ in FIELDS}
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SPIFFE = re.compile(r"^spiffe://([^/]+)/dept/([a-z][a-z0-9-]*)/([a-z]+)$")


def describe_response(pb):
    records_pb2, adapter_pb2 = pb
    fields = [
        records_pb2.FieldSpec(
            name=name,
            type=records_pb2.FieldType.Value(f"FIELD_TYPE_{ty}"),
            sensitivity=records_pb2.Sensitivity.Value(f"SENSITIVITY_{sens}"),
            description=desc,
        )
        for name, ty, sens, desc in FIELDS
    ]
    resource = records_pb2.ResourceDescription(
        name=RESOURCE,
        title="养老金领取人员 Pension recipients",
        description="One entry per person receiving a basic old-age pension, with this year's proof of life.",
        fields=fields,
        key_fields=KEY_FIELDS,
        sharing_class=records_pb2.SHARING_CLASS_CONDITIONAL,
        legal_basis="《中华人民共和国社会保险法》第十六条; 《政务信息资源共享管理暂行办法》第九条",
        update_cycle="daily",
    )
    return adapter_pb2.DescribeResponse(
        dept_id=DEPT, resources=[resource], software="huitong-python-example/0.1 grpcio"
    )


# --- values: JSON at the edge, typed tuples inside, proto Values on the wire -----------------
# A value inside is (kind, python value), so that equality is by type and value as on the wire.


def from_json(value, ty):
    if value is None:
        return ("null", None)
    if ty == "STRING":
        return ("string", str(value))
    if ty == "INT":
        return ("int", int(value))
    if ty == "DOUBLE":
        return ("double", float(value))
    if ty == "BOOL":
        return ("bool", bool(value))
    if ty == "DATE":
        d = datetime.date.fromisoformat(value)
        return ("date", (d.year, d.month, d.day))
    if ty == "TIMESTAMP":
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return ("timestamp", (int(t.timestamp()), 0))
    raise ValueError(f"unknown type {ty}")


def from_wire(v, ty):
    """A request's Value, coerced as the reference does: ints in double fields become doubles."""
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return ("null", None)
    if kind == "string_value":
        return ("string", v.string_value)
    if kind == "int_value":
        if ty == "DOUBLE":
            return ("double", float(v.int_value))
        return ("int", v.int_value)
    if kind == "double_value":
        return ("double", v.double_value)
    if kind == "bool_value":
        return ("bool", v.bool_value)
    if kind == "bytes_value":
        return ("bytes", v.bytes_value)
    if kind == "date_value":
        d = v.date_value
        return ("date", (d.year, d.month, d.day))
    if kind == "timestamp_value":
        t = v.timestamp_value
        return ("timestamp", (t.seconds + t.nanos // 1_000_000_000, t.nanos % 1_000_000_000))
    return ("unknown", None)


ACCEPTS = {
    "STRING": {"string"},
    "INT": {"int"},
    "DOUBLE": {"double", "int"},
    "BOOL": {"bool"},
    "BYTES": {"bytes"},
    "DATE": {"date"},
    "TIMESTAMP": {"timestamp"},
}
KIND_TEXT = {
    "string_value": "a string",
    "int_value": "an int",
    "double_value": "a double",
    "bool_value": "a bool",
    "bytes_value": "bytes",
    "date_value": "a date",
    "timestamp_value": "a timestamp",
}


def to_wire(value, records_pb2):
    kind, x = value
    v = records_pb2.Value()
    if kind == "null":
        v.null_value = True
    elif kind == "string":
        v.string_value = x
    elif kind == "int":
        v.int_value = x
    elif kind == "double":
        v.double_value = x
    elif kind == "bool":
        v.bool_value = x
    elif kind == "bytes":
        v.bytes_value = x
    elif kind == "date":
        v.date_value.year, v.date_value.month, v.date_value.day = x
    elif kind == "timestamp":
        v.timestamp_value.seconds, v.timestamp_value.nanos = x
    return v


def read_jsonl(path):
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"error: {path}, line {n}: not valid JSON (column {e.colno})")


def typed_row(obj, where):
    unknown = set(obj) - set(FIELD_TYPES)
    if unknown:
        sys.exit(f"error: {where}: {', '.join(sorted(unknown))} not fields of {RESOURCE}")
    try:
        return {name: from_json(obj.get(name), ty) for name, ty in FIELD_TYPES.items()}
    except (TypeError, ValueError) as e:
        sys.exit(f"error: {where}: {e}")


def key_of(row):
    return tuple(row[k] for k in KEY_FIELDS)


# --- the register and its changes --------------------------------------------------------------


class Register:
    """The records in a stable order, an index on the key, and the retained changes."""

    def __init__(self, data, changes):
        self.rows = []  # typed rows; a deleted row stays as None so offsets stay stable
        self.index = {}
        self.events = []  # (seq, key tuple, row or None)
        self.first_seq = 1
        self.lock = threading.Condition()
        # The load is published as inserts, so a watcher from the start sees the whole register.
        for n, obj in read_jsonl(data):
            row = typed_row(obj, f"{data}, line {n}")
            self.apply(key_of(row), row)
        if changes:
            for n, obj in read_jsonl(changes):
                where = f"{changes}, line {n}"
                key = tuple(from_json(obj["key"].get(k), FIELD_TYPES[k]) for k in KEY_FIELDS)
                row = typed_row(obj["record"], where) if obj.get("record") is not None else None
                self.apply(key, row)

    def apply(self, key, row):
        """Inserts, updates (row) or deletes (None) a record and publishes the change."""
        with self.lock:
            at = self.index.get(key)
            if row is None:
                if at is not None:
                    self.rows[at] = None
                    del self.index[key]
            elif at is None:
                self.index[key] = len(self.rows)
                self.rows.append(row)
            else:
                self.rows[at] = row
            seq = self.events[-1][0] + 1 if self.events else 1
            self.events.append((seq, key, row))
            if len(self.events) > RETAINED_CHANGES:
                del self.events[0]
                self.first_seq = self.events[0][0]
            self.lock.notify_all()


# --- the service -----------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def make_servicer(pb, adapter_pb2_grpc, register, trust_domain, misbehave):
    records_pb2, adapter_pb2 = pb
    describe = describe_response(pb)
    known = ", ".join(FIELD_TYPES)

    def caller_is_broker(context):
        # grpcio exposes the peer certificate's URI names; the TLS layer has already checked the
        # chain to the exchange CA (require_client_auth), this checks who the caller is.
        auth = context.auth_context()
        uris = [u.decode() for u in auth.get("peer_uri", [])]
        if not uris:
            uris = [
                s.decode()
                for s in auth.get("x509_subject_alternative_name", [])
                if s.startswith(b"spiffe://")
            ]
        if len(uris) != 1 or not SPIFFE.match(uris[0]):
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                "your certificate carries no valid Huitong identity; ask the exchange operator "
                "for a certificate issued by `huitong pki issue`",
            )
        domain, _dept, role = SPIFFE.match(uris[0]).groups()
        if domain != trust_domain:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"your certificate belongs to trust domain {domain!r}, but this exchange is {trust_domain!r}",
            )
        # Only the broker: a consumer must not bypass the broker's grants by dialling directly.
        if role != "broker":
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"a department's adapter serves only broker certificates; yours is {uris[0]}",
            )

    def resource(raw):
        name = raw
        if "/" in raw:
            dept, _, name = raw.partition("/")
            if not SLUG.match(dept) or not SLUG.match(name):
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"resource id {raw[:80]!r} is not <dept>/<name>")
            if dept != DEPT:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"resource {raw[:80]} is not served by department {DEPT}; Describe lists what is")
        elif not SLUG.match(name):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"resource name {raw[:80]!r} is not valid: use lowercase words joined by '-'")
        if name != RESOURCE:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"resource {name} is not served by department {DEPT}; Describe lists what is")
        return name

    def requested_fields(names):
        out = []
        for name in names:
            if name not in FIELD_TYPES:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"field {name[:80]!r} is not a field of {DEPT}/{RESOURCE}; its fields are: {known}")
            if name in out:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"field {name} is named twice")
            out.append(name)
        if not out:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "name the fields you need in `fields`; nothing is released by default")
        return out

    def typed(name, v):
        ty = FIELD_TYPES[name]
        value = from_wire(v, ty)
        if value[0] != "null" and value[0] not in ACCEPTS[ty]:
            got = KIND_TEXT.get(v.WhichOneof("kind"), "an unknown kind")
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"field {name!r} of {DEPT}/{RESOURCE} holds {ty.lower()} values, but {got} was given")
        return value

    def checked_key(key):
        expected = ", ".join(KEY_FIELDS)
        for name in key:
            if name not in KEY_FIELDS:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"the key of {DEPT}/{RESOURCE} is ({expected}); {name[:80]!r} is not a key field")
        values = []
        for name in KEY_FIELDS:
            if name not in key:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"the key of {DEPT}/{RESOURCE} is ({expected}); {len(key)} of {len(KEY_FIELDS)} key fields were given")
            value = typed(name, key[name])
            if value[0] == "null" or (value[0] in ("string", "bytes") and not str(value[1]).strip()):
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"the key of {DEPT}/{RESOURCE} is ({expected}); the value for {name} is empty")
            values.append(value)
        return tuple(values)

    def checked_filters(filters):
        out = {}
        for f in filters:
            if f.field not in FIELD_TYPES:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"field {f.field[:80]!r} is not a field of {DEPT}/{RESOURCE}; its fields are: {known}")
            if f.field in out:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"field {f.field} is named twice")
            out[f.field] = typed(f.field, f.value) if f.HasField("value") else ("null", None)
        return out

    def record(row, fields):
        r = records_pb2.Record()
        for name in fields:
            r.fields[name].CopyFrom(to_wire(row[name], records_pb2))
        return r

    def page_size(requested):
        return DEFAULT_PAGE_SIZE if requested == 0 else min(requested, MAX_PAGE_SIZE)

    def refusing(method):
        def call(self, request, context):
            try:
                caller_is_broker(context)
                return method(request, context)
            except Refused as r:
                context.abort(r.code, r.message)

        return call

    class Adapter(adapter_pb2_grpc.AdapterServicer):
        @refusing
        def Describe(request, context):
            return describe

        @refusing
        def Fetch(request, context):
            resource(request.resource)
            key = checked_key(request.key)
            fields = requested_fields(request.fields)
            with register.lock:
                at = register.index.get(key)
                row = register.rows[at] if at is not None else None
            if row is None:
                if "unknown-key-ok" in misbehave:
                    return adapter_pb2.FetchResponse(record=records_pb2.Record())
                if "not-found-names-key" in misbehave:
                    raise Refused(grpc.StatusCode.NOT_FOUND, f"pension {key[0]} is unknown")
                # The key is a personal identifier: never echo it.
                raise Refused(grpc.StatusCode.NOT_FOUND, f"no record of {DEPT}/{RESOURCE} has that key")
            return adapter_pb2.FetchResponse(record=record(row, fields))

        @refusing
        def Search(request, context):
            resource(request.resource)
            filters = checked_filters(request.filters)
            fields = requested_fields(request.fields)
            size = page_size(request.page_size)
            with register.lock:
                rows = list(register.rows)
            matches = [
                i for i, row in enumerate(rows)
                if row is not None and all(row[f] == v for f, v in filters.items())
            ]
            # A token is the offset of the next match, as the reference's JSON Lines source
            # issues them: stable while records are only appended or updated.
            token = request.page_token
            order = matches
            if "unstable-paging" in misbehave:
                seed, _, token = token.partition(":") if token else (str(random.randrange(1 << 30)), "", "")
                order = sorted(matches, key=lambda i: random.Random(f"{seed}-{i}").random())
            start = 0
            if token:
                if not token.isdigit() or str(int(token)) != token or int(token) not in order:
                    raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the page_token is not one this adapter issued; start again without one")
                start = order.index(int(token))
            chosen = order[start : start + size]
            rest = order[start + size : start + size + 1]
            next_token = str(rest[0]) if rest else ""
            if next_token and "unstable-paging" in misbehave:
                next_token = f"{seed}:{next_token}"
            return adapter_pb2.SearchResponse(
                records=[record(rows[i], fields) for i in chosen], next_page_token=next_token
            )

        def WatchChanges(self, request, context):
            try:
                caller_is_broker(context)
                resource(request.resource)
                after = parse_cursor(request.cursor)
            except Refused as r:
                context.abort(r.code, r.message)
            # Replay what is retained after the cursor, then wait for live changes until the
            # caller goes away; the stream stays open.
            while context.is_active():
                with register.lock:
                    pending = [e for e in register.events if e[0] > after]
                    if not pending:
                        register.lock.wait(timeout=0.5)
                        continue
                for seq, key, row in pending:
                    event = adapter_pb2.ChangeEvent(resource=RESOURCE, cursor=f"v1-{seq}")
                    for name, value in zip(KEY_FIELDS, key):
                        event.key[name].CopyFrom(to_wire(value, records_pb2))
                    if row is not None:
                        event.record.CopyFrom(record(row, FIELD_TYPES))
                    yield event
                    after = seq

    def parse_cursor(cursor):
        if not cursor:
            with register.lock:
                return register.first_seq - 1
        m = re.fullmatch(r"v1-([1-9][0-9]{0,18})", cursor)
        with register.lock:
            last = register.events[-1][0] if register.events else 0
            first = register.first_seq
        if not m or int(m.group(1)) > last:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the cursor is not one this adapter issued; watch again without one")
        seq = int(m.group(1))
        if seq < first - 1:
            raise Refused(grpc.StatusCode.OUT_OF_RANGE, "the changes after this cursor are no longer retained; read the resource afresh and watch again without a cursor")
        return seq

    return Adapter()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:7404", help="host:port; port 0 picks a free one")
    ap.add_argument("--ca", required=True, help="the exchange CA certificate (PEM)")
    ap.add_argument("--cert", required=True, help="this adapter's certificate (huitong pki issue --role adapter)")
    ap.add_argument("--key", required=True, help="this adapter's private key (PEM)")
    ap.add_argument("--trust-domain", help="the exchange's trust domain; by default read from trust-domain next to --ca")
    ap.add_argument("--data", default=os.path.join(HERE, "data", "pension-recipients.jsonl"))
    ap.add_argument("--changes", default=os.path.join(HERE, "data", "changes.jsonl"), help="changes applied after the load; '' for none")
    ap.add_argument("--proto-dir", default=os.path.join(HERE, "..", "..", "proto"))
    ap.add_argument(
        "--misbehave",
        default="",
        help="for testing the conformance checker: comma-separated unknown-key-ok, unstable-paging, not-found-names-key",
    )
    args = ap.parse_args()
    misbehave = {m for m in args.misbehave.split(",") if m}
    unknown = misbehave - {"unknown-key-ok", "unstable-paging", "not-found-names-key"}
    if unknown:
        sys.exit(f"error: --misbehave {','.join(sorted(unknown))}: use unknown-key-ok, unstable-paging, not-found-names-key")

    trust_domain = args.trust_domain
    if not trust_domain:
        path = os.path.join(os.path.dirname(os.path.abspath(args.ca)), "trust-domain")
        try:
            with open(path, encoding="utf-8") as f:
                trust_domain = f.read().strip()
        except OSError as e:
            sys.exit(f"error: give --trust-domain, or put the file trust-domain next to --ca ({e})")

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            sys.exit(f"error: cannot read {path}: {e}")

    generate_stubs(os.path.abspath(args.proto_dir))
    from huitong.v1 import adapter_pb2, adapter_pb2_grpc, records_pb2
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    register = Register(args.data, args.changes)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    servicer = make_servicer((records_pb2, adapter_pb2), adapter_pb2_grpc, register, trust_domain, misbehave)
    adapter_pb2_grpc.add_AdapterServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    for name in ("", "huitong.v1.Adapter"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        ["huitong.v1.Adapter", "grpc.health.v1.Health", reflection.SERVICE_NAME], server
    )
    credentials = grpc.ssl_server_credentials(
        [(read(args.key), read(args.cert))],
        root_certificates=read(args.ca),
        require_client_auth=True,
    )
    port = server.add_secure_port(args.listen, credentials)
    if port == 0:
        sys.exit(f"error: cannot listen on {args.listen}")
    server.start()
    # systemd and the tests stop servers with SIGTERM; finish the calls in flight first.
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=2))
    host = args.listen.rsplit(":", 1)[0]
    # The line scripts and tests wait for, as the huitong servers print it.
    print(f"python adapter {DEPT} listening on {host}:{port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=2)


if __name__ == "__main__":
    main()
