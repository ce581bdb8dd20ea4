"""Provenance helpers: the CPU description every speed figure carries."""

from laser_repro.runinfo import cpu_model, device_description

AMD = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni
"""
INTEL = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t: avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
OLD = "model name\t: Intel(R) Xeon(R) CPU E5-2680 v4\nflags\t: avx2 fma\n"


def test_cpu_model_names_the_bf16_units_from_cpuinfo():
    assert cpu_model(AMD) == "AMD EPYC, avx512_bf16"
    assert cpu_model(INTEL) == "Intel(R) Xeon(R) Platinum 8480+, amx_bf16, avx512_bf16"
    assert cpu_model(OLD) == "Intel(R) Xeon(R) CPU E5-2680 v4, no bf16 units"
    assert cpu_model("") == "unknown, no bf16 units"


def test_cpu_device_description_carries_the_cpu_model():
    desc = device_description("cpu")
    assert desc.startswith(f"cpu ({cpu_model()}; ") and desc.endswith(" threads)")


def test_cpu_model_where_cpuinfo_cannot_be_read(monkeypatch):
    from pathlib import Path

    def unreadable(self, *a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert cpu_model().endswith(", bf16 units unknown")
