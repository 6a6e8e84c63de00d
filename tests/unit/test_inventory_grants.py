"""The privileges the MariaDB and Galera runbooks need, read from SHOW GRANTS lines as the server
prints them, per server version (MariaDB's sql/privilege.h)."""

from __future__ import annotations

import pytest

from drengine.inventory_grants import grant_statements, granted, missing

pytestmark = pytest.mark.unit

ROOT = ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' "
        "WITH GRANT OPTION", "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION"]
OPS = ["GRANT PROCESS, SLAVE MONITOR, REPLICATION SLAVE ADMIN, CONNECTION ADMIN, SUPER ON *.* TO `ops`@`%` "
       "IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'",
       "GRANT SELECT, INSERT, DELETE, CREATE ON `drengine`.* TO `ops`@`%`",
       "GRANT SELECT (id) ON `app`.`t` TO `ops`@`%`"]


def test_all_privileges_hold_everything() -> None:
    assert granted(ROOT) == {"*.*": {"ALL"}}
    assert missing("mariadb", "10.11.19-MariaDB-0+deb12u1", ROOT) == []
    assert missing("galera", "10.11.19-MariaDB-0+deb12u1", ROOT) == []


def test_super_no_longer_sets_read_only_from_10_11() -> None:
    lacking = missing("mariadb", "10.11.19-MariaDB-0+deb12u1", OPS)
    assert [str(x) for x in lacking] == ["READ_ONLY ADMIN for SET GLOBAL read_only (fencing, promotion)"]
    assert grant_statements(lacking, "'ops'@'%'") == ["GRANT READ_ONLY ADMIN ON *.* TO 'ops'@'%'"]
    # 10.5.2 to 10.10: SUPER still allows it.
    assert missing("mariadb", "10.6.16-MariaDB", OPS) == []


def test_a_monitoring_account_lacks_what_recovery_sends() -> None:
    monitor = ["GRANT SLAVE MONITOR, PROCESS ON *.* TO `mon`@`10.%`", "GRANT SELECT ON `drengine`.* TO `mon`@`10.%`"]
    lacking = missing("mariadb", "10.11.6-MariaDB", monitor)
    assert [str(x) for x in lacking] == [
        "REPLICATION SLAVE ADMIN or SUPER for STOP SLAVE, CHANGE MASTER, RESET SLAVE ALL, START SLAVE (promote, rejoin)",
        "READ_ONLY ADMIN for SET GLOBAL read_only (fencing, promotion)",
        "CONNECTION ADMIN or SUPER for KILL CONNECTION of other accounts' sessions (fencing by SQL)",
        "CREATE, INSERT, DELETE on drengine.* for the heartbeat and canary writes"]
    assert grant_statements(lacking, "'mon'@'10.%'") == [
        "GRANT REPLICATION SLAVE ADMIN, READ_ONLY ADMIN, CONNECTION ADMIN ON *.* TO 'mon'@'10.%'",
        "GRANT CREATE, INSERT, DELETE ON drengine.* TO 'mon'@'10.%'"]


def test_galera_bootstrap_needs_super_and_old_servers_need_super_for_all() -> None:
    fine = ["GRANT READ_ONLY ADMIN, CONNECTION ADMIN, PROCESS ON *.* TO `g`@`%`", "GRANT ALL PRIVILEGES ON `drengine`.* TO `g`@`%`"]
    assert [x.any_of for x in missing("galera", "10.11.6-MariaDB", fine)] == [("SUPER",)]
    old = ["GRANT REPLICATION CLIENT, PROCESS ON *.* TO 'ops'@'%'", "GRANT ALL PRIVILEGES ON `drengine`.* TO 'ops'@'%'"]
    assert [x.any_of for x in missing("mariadb", "10.3.39-MariaDB", old)] == [("SUPER",), ("SUPER",), ("SUPER",)]
