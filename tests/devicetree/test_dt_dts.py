"""dtc wrapper: DTS ↔ DTB, syntax errors with their line, refused host-file directives."""

from __future__ import annotations

import pytest

from mkd.config import LimitSettings
from mkd.devicetree import dts
from mkd.devicetree.dts import dtb_to_dts, dts_to_dtb, is_dtb
from mkd.errors import KernelError

SIMPLE = '/dts-v1/;\n/ {\n\tcompatible = "multikernel-v1";\n\tvalue = <0x2a>;\n};\n'


def test_compile_and_decompile_round_trip() -> None:
    dtb = dts_to_dtb(SIMPLE)
    assert is_dtb(dtb)
    text = dtb_to_dts(dtb)
    assert 'compatible = "multikernel-v1";' in text
    assert "value = <0x2a>;" in text
    assert dts_to_dtb(text) == dtb


def test_is_dtb_looks_at_the_magic_only() -> None:
    assert is_dtb(bytes.fromhex("d00dfeed") + b"\0" * 4)
    assert not is_dtb(b"/dts-v1/;")
    assert not is_dtb(b"")
    assert not is_dtb(bytes.fromhex("d00dfe"))


def test_syntax_error_reports_line_and_column() -> None:
    text = "/dts-v1/;\n/ {\n\ta = <1 2>\n\tb;\n};\n"
    with pytest.raises(KernelError) as err:
        dts_to_dtb(text)
    assert err.value.errno == "EINVAL"
    assert err.value.status == 422
    assert "line 4:2" in err.value.detail
    assert "syntax error" in err.value.detail
    assert "<stdin>" not in err.value.detail


def test_semantic_error_from_dtc_is_reported() -> None:
    with pytest.raises(KernelError) as err:
        dts_to_dtb("/dts-v1/;\n/ { a = &nowhere; };\n")
    assert err.value.errno == "EINVAL"
    assert "line 2:" in err.value.detail
    assert "nowhere" in err.value.detail


@pytest.mark.parametrize(
    "text",
    [
        '/dts-v1/;\n/include/ "/etc/hostname"\n/ { };\n',
        '/dts-v1/;\n/ { secret = /incbin/("/etc/hostname"); };\n',
    ],
)
def test_directives_that_read_host_files_are_refused(text: str) -> None:
    with pytest.raises(KernelError) as err:
        dts_to_dtb(text)
    assert err.value.errno == "EINVAL"
    assert "read files on the host" in err.value.detail


def test_dtc_timeout_is_a_refusal() -> None:
    dts.configure_dtc(LimitSettings(dtc_timeout_s=1e-9))
    try:
        with pytest.raises(KernelError) as err:
            dts_to_dtb(SIMPLE)
    finally:
        dts.configure_dtc(LimitSettings())
    assert err.value.errno == "EINVAL"
    assert "did not finish" in err.value.detail


def test_decompile_validates_the_blob_first() -> None:
    dtb = dts_to_dtb(SIMPLE)
    with pytest.raises(KernelError) as err:
        dtb_to_dts(dtb[:-8])
    assert err.value.errno == "EINVAL"
    assert "totalsize" in err.value.detail


def test_missing_dtc_is_a_deployment_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dts.shutil, "which", lambda _name: None)
    with pytest.raises(dts.DtcUnavailable) as err:
        dts_to_dtb(SIMPLE)
    assert err.value.status == 503
