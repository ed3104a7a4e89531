"""[daemon] security settings (DESIGN "Security"): TLS files go together, proxies are addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkd.config import load_settings
from mkd.db.session import make_engine
from mkd.errors import InvalidInput


@pytest.mark.parametrize(("daemon", "complaint"), [
    ({"tls_cert": "/etc/mkd/cert.pem"}, "tls_cert and tls_key go together"),
    ({"tls_key": "/etc/mkd/key.pem"}, "tls_cert and tls_key go together"),
    ({"tls_client_ca": "/etc/mkd/ca.pem"}, "tls_client_ca needs tls_cert"),
    ({"trusted_proxies": ["10.0.0.0/8", "proxy.example"]}, "proxy.example"),
])
def test_inconsistent_security_settings_are_refused(daemon: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        load_settings(None, overrides={f"daemon.{key}": value for key, value in daemon.items()})


def test_defaults_trust_no_proxy_and_need_no_tls() -> None:
    daemon = load_settings(None).daemon
    assert daemon.trusted_proxies == [] and daemon.tls_cert is None and daemon.insecure_plaintext is False
    assert daemon.sqlite_synchronous == "full"


def test_the_database_is_made_0600(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    engine = make_engine(path)
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x)")
    assert path.stat().st_mode & 0o777 == 0o600
