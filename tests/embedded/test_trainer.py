"""The trainer's choices that depend on the machine it runs on."""
from analyses.embedded.train import TrainConfig, main, native_bf16


def test_bf16_only_where_the_cpu_has_bf16_instructions(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx avx2 fma avx512f\n")
    assert native_bf16(cpuinfo) is False  # AVX2 / AVX-512F alone emulate bf16: ~19x slower
    cpuinfo.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n")
    assert native_bf16(cpuinfo) is True
    cpuinfo.write_text("processor : 0\nflags : fpu avx2 amx_bf16 amx_tile\n")
    assert native_bf16(cpuinfo) is True
    assert native_bf16(tmp_path / "absent") is False


def test_precision_defaults_to_the_machine_and_the_flag_overrides_it(monkeypatch, tmp_path):
    assert TrainConfig().bf16 is None  # decided by native_bf16 when training starts
    seen = {}

    def fake_train(cfg, out_dir, log):
        seen["cfg"] = cfg
        return {"steps": 0, "minutes": 0.0, "passed": False}

    monkeypatch.setattr("analyses.embedded.train.train", fake_train)
    for argv, expected in (([], None), (["--bf16"], True), (["--no-bf16"], False)):
        seen.clear()
        main(["--out", str(tmp_path), *argv])
        assert seen["cfg"].bf16 is expected
