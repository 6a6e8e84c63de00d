"""`drengine inventory discover KIND ADDRESS[:PORT]`: ask a running cluster for its members and
write the cluster section of an inventory, to paste or save. Read-only: only status queries
are sent. What the cluster cannot say (which inventory host runs each member, service
templates, pid files) is left for the operator, marked `# FILL IN`.

MariaDB: from a replica, `SHOW SLAVE STATUS` names the primary; on the primary,
`SHOW SLAVE HOSTS` lists the replicas (their report_host and report_port). Galera:
`wsrep_incoming_addresses` lists every node's client address. MongoDB: `replSetGetConfig` on any
member lists the replica set's members (`m<_id>`, host:port). Elasticsearch: `GET /_nodes/http`
names every node and the HTTP address it publishes. Ceph (`drengine.discover_ceph`): the monmap,
the OSD map and tree, and the manager map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drengine.errors import ConnectError, InputError
from drengine.inventory import SecretRef

DISCOVERABLE = ("mariadb", "galera", "mongodb", "elasticsearch", "ceph")


@dataclass(frozen=True)
class Found:
    name: str
    address: str
    port: int | None  # None: the member has no client port of its own (Ceph OSDs and managers)
    role: str = ""
    hint: str = ""  # what the cluster says that helps fill in the rest (a Ceph OSD's CRUSH host)


@dataclass
class Discovery:
    kind: str
    members: list[Found]
    notes: list[str] = field(default_factory=list)


def split_address(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{text!r}: expected ADDRESS or ADDRESS:PORT")
    return host, int(port)


def _connect(address: str, port: int, user: str, password: str | None, timeout: float) -> object:
    import pymysql

    try:
        return pymysql.connect(host=address, port=port, user=user, password=password or "", connect_timeout=timeout,
                               read_timeout=timeout, write_timeout=timeout)
    except pymysql.MySQLError as exc:
        raise ConnectError(f"cannot ask {address}:{port} as {user}: {exc}") from None


def _rows(conn: object, statement: str) -> list[dict[str, object]]:
    import pymysql

    with conn.cursor(pymysql.cursors.DictCursor) as cur:  # type: ignore[attr-defined]
        cur.execute(statement)
        return list(cur.fetchall())


def discover_mariadb(address: str, port: int, user: str, password: str | None, timeout: float = 3.0) -> Discovery:
    conn = _connect(address, port, user, password, timeout)
    notes: list[str] = []
    try:
        status = _rows(conn, "SHOW SLAVE STATUS")
        me = _rows(conn, "SELECT @@server_id AS id, @@port AS port")[0]
    finally:
        conn.close()  # type: ignore[attr-defined]
    if status:
        primary = (str(status[0]["Master_Host"]), int(str(status[0]["Master_Port"])))
        notes.append(f"{address}:{port} (server_id {me['id']}) replicates from {primary[0]}:{primary[1]}")
    else:
        primary = (address, port)
    conn = _connect(*primary, user, password, timeout)
    try:
        head = _rows(conn, "SELECT @@server_id AS id, @@port AS port")[0]
        replicas = _rows(conn, "SHOW SLAVE HOSTS")
    finally:
        conn.close()  # type: ignore[attr-defined]
    members = [Found(f"db{head['id']}", primary[0], int(str(head["port"])), "primary")]
    for row in sorted(replicas, key=lambda r: int(str(r["Server_id"]))):
        host = str(row.get("Host") or "")
        if not host:
            notes.append(f"replica server_id {row['Server_id']} sets no report_host: its address is left to fill in")
            host = "FILL-IN.invalid"
        members.append(Found(f"db{row['Server_id']}", host, int(str(row["Port"])), "replica"))
    return Discovery("mariadb", members, notes)


def discover_galera(address: str, port: int, user: str, password: str | None, timeout: float = 3.0) -> Discovery:
    conn = _connect(address, port, user, password, timeout)
    try:
        try:
            # MariaDB 10.4+ keeps the membership with node names (wsrep_node_name).
            named = [(str(r["node_name"]), str(r["node_incoming_address"]))
                     for r in _rows(conn, "SELECT node_name, node_incoming_address FROM mysql.wsrep_cluster_members")]
        except Exception:  # older servers: no wsrep_schema; the status variable below still says it
            named = []
        rows = _rows(conn, "SHOW STATUS LIKE 'wsrep_incoming_addresses'")
    finally:
        conn.close()  # type: ignore[attr-defined]
    if not named:
        if not rows or not str(rows[0]["Value"]).strip():
            raise ConnectError(f"{address}:{port} reports no wsrep_incoming_addresses: is it a Galera node (wsrep_on)?")
        named = [(f"g{i}", a.strip()) for i, a in enumerate(sorted(str(rows[0]["Value"]).split(",")), start=1)
                 if a.strip()]
    notes = [f"nodes as {address}:{port} knows them"]
    members = []
    for name, incoming in sorted(named):
        host, node_port = split_address(incoming, 3306)
        if host.upper() == "AUTO":
            notes.append(f"{name} reports its client address as AUTO (wsrep_node_incoming_address unset): fill it in")
            host = "FILL-IN.invalid"
        members.append(Found(name, host, node_port))
    return Discovery("galera", members, notes)


def discover_mongodb(address: str, port: int, user: str, password: str | None, timeout: float = 3.0) -> Discovery:
    import pymongo
    from pymongo.errors import PyMongoError

    auth = {"username": user, "password": password} if password is not None else {}
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        address, port, directConnection=True, serverSelectionTimeoutMS=int(timeout * 1000),
        connectTimeoutMS=int(timeout * 1000), socketTimeoutMS=int(timeout * 1000), **auth)  # type: ignore[arg-type]
    try:
        config = client.admin.command("replSetGetConfig")["config"]
    except PyMongoError as exc:
        raise ConnectError(f"cannot ask {address}:{port} for its replica set configuration: {exc}") from None
    finally:
        client.close()
    members = []
    for m in sorted(config["members"], key=lambda m: int(m["_id"])):
        host, member_port = split_address(str(m["host"]), 27017)
        role = "arbiter" if m.get("arbiterOnly") else "hidden" if m.get("hidden") else ""
        members.append(Found(f"m{m['_id']}", host, member_port, role))
    return Discovery("mongodb", members, [f"replica set {config['_id']} (config version {config.get('version')}) "
                                          f"as {address}:{port} knows it"])


def discover_elasticsearch(address: str, port: int, user: str, password: str | None,
                           timeout: float = 3.0) -> Discovery:
    import base64
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{address}:{port}/_nodes/http?filter_path=nodes.*.name,nodes.*.http")
    if password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http only, by construction)
            nodes = json.loads(answer.read())["nodes"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise ConnectError(f"cannot ask http://{address}:{port} for its nodes: {exc}") from None
    members = []
    for node in sorted(nodes.values(), key=lambda n: str(n["name"])):
        # publish_address is `IP:PORT` or `HOSTNAME/IP:PORT`: the name is what operators use.
        published = str(node.get("http", {}).get("publish_address", ""))
        host_part, _, port_part = published.rpartition(":")
        host = host_part.split("/")[0] if host_part else "FILL-IN.invalid"
        members.append(Found(str(node["name"]), host, int(port_part) if port_part.isdigit() else 9200))
    return Discovery("elasticsearch", members, [f"the nodes in the cluster now, as http://{address}:{port} knows "
                                                f"them (their published HTTP addresses); a node that has left it is "
                                                f"not listed: add it by hand"])


def discover(kind: str, target: str, user: str, password: SecretRef | None, ceph_conf: str | None = None) -> Discovery:
    from drengine.datastores import datastore

    if kind not in DISCOVERABLE:
        raise InputError(f"discovery of {kind} is not available in this version (available: {', '.join(DISCOVERABLE)})")
    address, port = split_address(target, datastore(kind).default_port)
    if kind == "ceph":
        from drengine.discover_ceph import discover_ceph

        if password is not None:
            raise InputError("Ceph authenticates with a keyring, not a password: give --ceph-conf FILE naming it")
        return discover_ceph(address, port, user, ceph_conf)
    if ceph_conf is not None:
        raise InputError(f"--ceph-conf is for Ceph clusters, not {kind}")
    secret = password.resolve(f"--password for {user}") if password is not None else None
    ask = {"mariadb": discover_mariadb, "galera": discover_galera, "mongodb": discover_mongodb,
           "elasticsearch": discover_elasticsearch}[kind]
    return ask(address, port, user, secret)


def cluster_yaml(found: Discovery, name: str, user: str, password: SecretRef | None,
                 ceph_conf: str | None = None) -> str:
    """The cluster section, as YAML with comments: what the cluster said, and what to fill in."""
    lines = [f"# discovered by drengine inventory discover: {'; '.join(found.notes) or 'as seen now'}",
             "clusters:", f"  {name}:", f"    kind: {found.kind}"]
    if found.kind == "ceph":
        client = user if user.startswith("client.") else f"client.{user}"
        fill = "" if ceph_conf else "  # FILL IN: the ceph.conf (and keyring) drengine reads on this machine"
        lines.append(f"    ceph: {{conf_file: {ceph_conf or '/etc/ceph/ceph.conf'}, client_name: {client}}}{fill}")
    elif password is not None or found.kind in ("mariadb", "galera"):
        lines += ["    credentials:", f"      user: {user}"]
    if password is not None:
        ref = f"{{env: {password.env}}}" if password.env else f"{{file: {password.file}}}"
        lines.append(f"      password: {ref}")
    unit = {"mongodb": "mongod", "elasticsearch": "elasticsearch", "ceph": "ceph-TYPE@ID (ceph-mon@a, ceph-osd@0)"
            }.get(found.kind, "mariadb")
    lines += ["    # FILL IN: service templates (start/stop), e.g.",
              f"    # service: {{start: systemctl start {unit}, stop: systemctl stop {unit}}}",
              "    members:"]
    pid_file = {"mongodb": "/var/run/mongodb/mongod.pid", "elasticsearch": "/var/run/elasticsearch/elasticsearch.pid"
                }.get(found.kind, "/run/mysqld/mysqld.pid")
    for m in found.members:
        fields = f"name: {m.name}, address: {m.address}" + (f", port: {m.port}" if m.port is not None else "")
        if found.kind == "ceph":  # the role says what a Ceph member is: status and the runbooks read it
            fields += f", role: {m.role}"
            pid_file = f"/var/run/ceph/ceph-{m.name}.pid"
        comment = "; ".join(filter(None, [m.role if found.kind != "ceph" else "", m.hint]))
        lines.append(f"      - {{{fields}}}" + (f"  # {comment}" if comment else ""))
        lines.append(f"        # FILL IN: host: INVENTORY-HOST, pid_file: {pid_file}")
    return "\n".join(lines) + "\n"
