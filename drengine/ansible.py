"""Ansible inventories as the source of an inventory's hosts (`hosts: {ansible: PATH}`).

Read here, without Ansible: the INI format (`[group]`, `[group:vars]`, `[group:children]`,
`host[01:03]` ranges, `key=value` host variables) and the YAML format (`all:` / `hosts:` /
`vars:` / `children:`). Variables apply as Ansible applies them: `all`, then parent groups
before their children (siblings by name), then the host's own. What drengine understands
becomes a host entry: ansible_host, ansible_port, ansible_user, ansible_become,
ansible_ssh_private_key_file, ansible_connection (ssh or local) and ProxyJump in
ansible_ssh_common_args / ansible_ssh_extra_args. A variable that would change how to reach
the host in a way drengine cannot follow (a password in the file, a become method other than
sudo, other SSH options) is refused with the file and line; other variables (the
application's, ansible_python_interpreter) are ignored.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drengine.errors import InputError
from drengine.yamlsrc import load_yaml


@dataclass
class _Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, tuple[Any, str]] = field(default_factory=dict)  # value, FILE:LINE


@dataclass
class AnsibleInventory:
    """Hosts with the variables Ansible would give them, each variable with where it was set."""

    path: str
    host_vars: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)
    host_where: dict[str, str] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)

    def group(self, name: str) -> _Group:
        return self.groups.setdefault(name, _Group(name))

    def add_host(self, name: str, where: str, group: str, variables: dict[str, tuple[Any, str]]) -> None:
        self.host_where.setdefault(name, where)
        self.host_vars.setdefault(name, {}).update(variables)
        g = self.group(group)
        if name not in g.hosts:
            g.hosts.append(name)

    def variables(self, host: str) -> dict[str, tuple[Any, str]]:
        """all < parent groups < child groups (siblings by name) < the host's own."""
        depth: dict[str, int] = {}

        def walk(group: str, level: int, seen: frozenset[str]) -> None:
            if group in seen or group not in self.groups:
                return
            depth[group] = max(depth.get(group, -1), level)
            for child in self.groups[group].children:
                walk(child, level + 1, seen | {group})

        for root in self.groups:
            if not any(root in g.children for g in self.groups.values()):
                walk(root, 1 if root != "all" else 0, frozenset())
        merged: dict[str, tuple[Any, str]] = {}
        member_of = [g for g in self.groups.values() if self._contains(g.name, host, frozenset())]
        for g in sorted(member_of, key=lambda g: (depth.get(g.name, 1), g.name)):
            merged.update(g.vars)
        merged.update(self.host_vars.get(host, {}))
        return merged

    def _contains(self, group: str, host: str, seen: frozenset[str]) -> bool:
        if group == "all":
            return True
        g = self.groups.get(group)
        if g is None or group in seen:
            return False
        return host in g.hosts or any(self._contains(c, host, seen | {group}) for c in g.children)


_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])\]")


def _expand(pattern: str, where: str) -> list[str]:
    """`db[01:03].example` -> db01, db02, db03 (Ansible's host ranges; alphabetic too)."""
    found = _RANGE.search(pattern)
    if found is None:
        return [pattern]
    start, end = found.group(1), found.group(2)
    if start.isdigit() != end.isdigit():
        raise InputError(f"{where}: host range {found.group(0)} mixes digits and letters")
    if start.isdigit():
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1)]
    else:
        items = [chr(c) for c in range(ord(start), ord(end) + 1)]
    if not items or len(items) > 1000:
        raise InputError(f"{where}: host range {found.group(0)} is empty or larger than 1000 hosts")
    return [h for item in items for h in _expand(pattern[:found.start()] + item + pattern[found.end():], where)]


def _ini_value(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _ini_pairs(words: list[str], where: str) -> dict[str, tuple[Any, str]]:
    pairs: dict[str, tuple[Any, str]] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InputError(f"{where}: expected `name=value` after the host name, got {word!r}")
        pairs[key] = (_ini_value(value), where)
    return pairs


def read_ini(path: Path) -> AnsibleInventory:
    inv = AnsibleInventory(str(path))
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path}:{number}"
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InputError(f"{where}: a section header needs its closing `]`: {line!r}")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InputError(f"{where}: unknown section kind `:{kind}`; expected [GROUP], [GROUP:vars] or "
                                 f"[GROUP:children]")
            inv.group(section)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InputError(f"{where}: cannot read this line ({exc})") from None
        if kind == "vars":
            inv.group(section).vars.update(_ini_pairs([line.replace(" = ", "=", 1)], where))
        elif kind == "children":
            inv.group(section).children.append(words[0])
            inv.group(words[0])
        else:
            for host in _expand(words[0], where):
                inv.add_host(host, where, section, _ini_pairs(words[1:], where))
    return inv


def read_yaml(path: Path) -> AnsibleInventory:
    source = load_yaml(path)
    inv = AnsibleInventory(str(path))
    if not isinstance(source.data, dict):
        raise InputError(f"{path}:1: expected a mapping of groups (e.g. `all:` with `hosts:` and `children:`)")

    def group(name: str, body: Any, loc: tuple[str | int, ...]) -> None:
        inv.group(name)
        if body is None:
            return
        if not isinstance(body, dict):
            raise InputError(f"{source.where(loc)}: group {name} must be a mapping with hosts:, vars: or children:")
        for key in body:
            if key not in ("hosts", "vars", "children"):
                raise InputError(f"{source.where((*loc, key))}: unknown key {key!r} in group {name}; expected "
                                 f"hosts:, vars: or children:")
        for host, host_vars in (body.get("hosts") or {}).items():
            where = source.where((*loc, "hosts", host))
            if host_vars is not None and not isinstance(host_vars, dict):
                raise InputError(f"{where}: host {host}'s variables must be a mapping")
            for expanded in _expand(str(host), where):
                inv.add_host(expanded, where, name, {k: (v, source.where((*loc, "hosts", host, k)))
                                                     for k, v in (host_vars or {}).items()})
        inv.group(name).vars.update({k: (v, source.where((*loc, "vars", k))) for k, v in (body.get("vars") or {}).items()})
        for child, child_body in (body.get("children") or {}).items():
            inv.group(name).children.append(str(child))
            group(str(child), child_body, (*loc, "children", child))

    for name, body in source.data.items():
        group(str(name), body, (name,))
    return inv


def read_ansible(path: Path) -> AnsibleInventory:
    if not path.is_file():
        raise InputError(f"{path}: the Ansible inventory does not exist or is not a file")
    head = path.read_text(encoding="utf-8", errors="replace").lstrip()
    looks_yaml = path.suffix in (".yml", ".yaml") or head.startswith(("---", "all:"))
    return read_yaml(path) if looks_yaml else read_ini(path)


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_IGNORED_CONNECTION_VARS = {"ansible_python_interpreter", "ansible_shell_type", "ansible_shell_executable",
                            "ansible_ssh_pipelining", "ansible_pipelining", "ansible_host_key_checking",
                            "ansible_become_flags"}


def _bool(value: Any, where: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise InputError(f"{where}: {name}={value!r} is not a boolean; expected true or false")


def _proxy_jump(args: str, where: str, name: str) -> str:
    words = shlex.split(args)
    jump: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-J" and i + 1 < len(words):
            jump, i = words[i + 1], i + 2
        elif word == "-o" and i + 1 < len(words) and words[i + 1].lower().startswith("proxyjump="):
            jump, i = words[i + 1].split("=", 1)[1], i + 2
        elif word.lower().startswith("-oproxyjump="):
            jump, i = word.split("=", 1)[1], i + 1
        else:
            raise InputError(f"{where}: {name} holds {word!r}; drengine follows only ProxyJump (-J HOST or "
                             f"-o ProxyJump=HOST) from it. Put other SSH options in ~/.ssh/config")
    if jump is None:
        raise InputError(f"{where}: {name} is set but holds no ProxyJump")
    return jump


# Variables that map straight onto a host setting: (section, field); "" is the host itself.
_DIRECT = {"ansible_host": ("", "address"), "ansible_ssh_host": ("", "address"),
           "ansible_port": ("ssh", "port"), "ansible_ssh_port": ("ssh", "port"),
           "ansible_user": ("ssh", "user"), "ansible_ssh_user": ("ssh", "user"),
           "ansible_ssh_private_key_file": ("ssh", "key_file"), "ansible_private_key_file": ("ssh", "key_file")}
_PASSWORDS = {"ansible_password", "ansible_ssh_pass", "ansible_become_password", "ansible_become_pass",
              "ansible_sudo_pass"}


def _setting(var: str, value: Any, where: str, jump_names: dict[str, str]) -> tuple[str, str, Any] | None:
    """(section, field, value) for one connection variable; None when it changes nothing."""
    if var in _DIRECT:
        section, name = _DIRECT[var]
        return section, name, value if name == "port" else str(value)
    if var == "ansible_become":
        return "", "become", _bool(value, where, var)
    if var in _PASSWORDS:
        raise InputError(f"{where}: {var} holds a password in the inventory file; drengine reads secrets only "
                         f"by reference: give the host `become_password: {{env: VAR}}` or use SSH keys")
    if var in ("ansible_become_method", "ansible_become_user"):
        if str(value) != ("sudo" if var == "ansible_become_method" else "root"):
            raise InputError(f"{where}: {var}={value}: drengine becomes root, with sudo, only")
        return None
    if var == "ansible_connection":
        if str(value) not in ("ssh", "paramiko", "smart", "local"):
            raise InputError(f"{where}: ansible_connection={value}: drengine reaches hosts over ssh or locally")
        return "", "transport", "local" if str(value) == "local" else "ssh"
    if var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        jump = _proxy_jump(str(value), where, var)
        if jump not in jump_names:
            raise InputError(f"{where}: {var} jumps through {jump!r}, which is not a host of this Ansible "
                             f"inventory; add it (with its ansible_host) so that drengine can verify its key")
        return "ssh", "proxy_jump", jump_names[jump]
    raise InputError(f"{where}: {var} is not supported by drengine (it reads ansible_host, ansible_port, "
                     f"ansible_user, ansible_become, ansible_ssh_private_key_file, ansible_connection and "
                     f"ProxyJump in ansible_ssh_common_args)")


def host_entry(name: str, variables: dict[str, tuple[Any, str]], jump_names: dict[str, str]) -> dict[str, Any]:
    """An inventory `hosts:` entry (as data) from the variables Ansible gives the host."""
    entry: dict[str, Any] = {"address": name}
    ssh: dict[str, Any] = {}
    for var, (value, where) in variables.items():
        if not var.startswith("ansible_") or var in _IGNORED_CONNECTION_VARS:
            continue  # the application's variables, and ones that change nothing for drengine
        setting = _setting(var, value, where, jump_names)
        if setting is not None:
            section, key, converted = setting
            (ssh if section == "ssh" else entry)[key] = converted
    if ssh:
        entry["ssh"] = ssh
    return entry


def ansible_hosts(path: Path) -> dict[str, dict[str, Any]]:
    """Every host of an Ansible inventory as drengine `hosts:` entries (data, validated by the caller)."""
    inv = read_ansible(path)
    variables = {name: inv.variables(name) for name in inv.host_where}
    # A jump named by its Ansible name or by its address both mean that host.
    jump_names = {str(v.get("ansible_host", (name, ""))[0]): name for name, v in variables.items()}
    jump_names.update({name: name for name in inv.host_where})
    return {name: host_entry(name, variables[name], jump_names) for name in inv.host_where}
