"""`roadseg export --to triton`: the generated model repository is checked against the ONNX graph it
serves (names, data types, dims, batching), for fixed-shape and dynamic exports.

config.pbtxt is parsed with a small reader of protobuf's text format below (no Triton install
needed); where tritonclient is installed, it is also parsed strictly against Triton's own ModelConfig
protobuf."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from roadseg.core.card import ModelCard
from roadseg.core.errors import MissingDependencyError
from roadseg.export.command import ExportOptions, export
from roadseg.export.triton import read_card_parameter

ONNX_TO_TRITON = {TensorProto.UINT8: "TYPE_UINT8", TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16"}


# -- a reader for protobuf text format (enough for config.pbtxt) -------------------------------------

_TOKEN = re.compile(r'\s*(?:#[^\n]*\n?|(?P<tok>"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"bad pbtxt at {text[pos : pos + 30]!r}")
        if m.group("tok"):
            out.append(m.group("tok"))
        pos = m.end()
    return out


def parse_pbtxt(text: str) -> dict:
    """Message -> {field: [values]}; a value is a str (quoted strings unescaped), int, enum name, or a
    nested message dict. Raises on anything malformed."""
    toks = _tokens(text)
    i = 0

    def scalar(t: str):
        if t.startswith('"'):
            return bytes(t[1:-1], "utf-8").decode("unicode_escape")
        if re.fullmatch(r"-?\d+", t):
            return int(t)
        return t

    def value():
        nonlocal i
        t = toks[i]
        if t == "{":
            i += 1
            return message("}")
        i += 1
        return scalar(t)

    def message(end: str | None) -> dict:
        nonlocal i
        msg: dict = {}
        while i < len(toks) and toks[i] != end:
            name = toks[i]
            assert re.fullmatch(r"[A-Za-z_]\w*", name), f"field name expected, got {name!r}"
            i += 1
            if toks[i] == ":":
                i += 1
            if toks[i] == "[":
                i += 1
                while toks[i] != "]":
                    msg.setdefault(name, []).append(value())
                    if toks[i] == ",":
                        i += 1
                i += 1
            else:
                msg.setdefault(name, []).append(value())
            if i < len(toks) and toks[i] in (",", ";"):
                i += 1
        if end is not None:
            assert toks[i] == end, "unclosed message"
            i += 1
        return msg

    out = message(None)
    assert i == len(toks)
    return out


def test_pbtxt_reader():
    m = parse_pbtxt('# c\nname: "a\\"b" n: -1 x [ 1, 2 ] y { k: V } y [ { k: W }, { k: Z } ]\n')
    assert m == {"name": ['a"b'], "n": [-1], "x": [1, 2], "y": [{"k": ["V"]}, {"k": ["W"]}, {"k": ["Z"]}]}


# -- exports ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(request, tmp_path_factory):
    """(checkpoint path or None, export factory): conftest's trained tiny model when there is one,
    else an untrained tiny Fast-SCNN (the graph's inputs and outputs are what matter here)."""
    try:
        return request.getfixturevalue("tiny_export")
    except pytest.FixtureLookupError:
        pass
    import torch

    from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE
    from roadseg.train.checkpoint import atomic_save, make_checkpoint
    from roadseg.train.models import build

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("triton_tiny")
    card = ModelCard(name="tiny", arch="fastscnn", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=(64, 96))  # fmt: skip
    ckpt = folder / "tiny.pt"
    atomic_save(make_checkpoint(build("fastscnn", 11).eval(), "fastscnn", {}, card), ckpt)
    cache: dict = {}

    def make(**options) -> Path:
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in cache:
            out = folder / f"tiny_{len(cache)}.onnx"
            cache[key] = Path(export(ExportOptions(model=str(ckpt), output=str(out), progress=False, **options)))
        return cache[key]

    return make


@pytest.fixture(scope="module")
def fixed_onnx(tiny) -> Path:
    return tiny(frame_size=(72, 96))


@pytest.fixture(scope="module")
def dynamic_onnx(tiny) -> Path:
    return tiny(dynamic=True)


def triton(onnx_path: Path, out: Path, **kw) -> Path:
    return Path(export(ExportOptions(model=str(onnx_path), to="triton", output=str(out), progress=False, **kw)))


def onnx_io(path: Path):
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}

    def desc(v):
        t = v.type.tensor_type
        return v.name, t.elem_type, [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]

    return [desc(v) for v in m.graph.input if v.name not in inits], [desc(v) for v in m.graph.output]


def check_against_graph(cfg: dict, onnx_path: Path) -> int:
    """Every config tensor is a graph tensor with the same name, type and shape. Returns max_batch_size."""
    inputs, outputs = onnx_io(onnx_path)
    mbs = cfg["max_batch_size"][0]
    for kind, tensors in (("input", inputs), ("output", outputs)):
        got = cfg[kind]
        assert [t["name"][0] for t in got] == [name for name, _, _ in tensors]
        for entry, (name, elem, dims) in zip(got, tensors):
            assert entry["data_type"] == [ONNX_TO_TRITON[elem]], name
            full = ([-1] + entry["dims"]) if mbs > 0 else entry["dims"]  # Triton: [-1] + dims when batching
            assert full == dims, (name, full, dims)
    return mbs


def read_config(repo: Path) -> tuple[str, dict]:
    text = (repo / "tiny" / "config.pbtxt").read_text()
    return text, parse_pbtxt(text)


def test_fixed_export_repository(fixed_onnx, tmp_path):
    repo = triton(fixed_onnx, tmp_path / "repo", instances=2)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == [
        "tiny",
        "tiny/1",
        "tiny/1/model.onnx",
        "tiny/config.pbtxt",
    ]
    text, cfg = read_config(repo)
    assert cfg["name"] == ["tiny"] and cfg["platform"] == ["onnxruntime_onnx"]
    assert check_against_graph(cfg, fixed_onnx) == 0  # a fixed batch cannot be batched by Triton
    assert cfg["input"][0]["dims"] == [1, 72, 96, 3] and cfg["output"][0]["dims"] == [1, 72, 96]
    assert "dynamic_batching" not in cfg
    assert cfg["instance_group"] == [{"count": [2], "kind": ["KIND_AUTO"]}]  # GPUs where Triton has them, else CPU
    (param,) = cfg["parameters"]
    assert param["key"] == ["roadseg"]
    card = ModelCard.from_json(param["value"][0]["string_value"][0])
    assert (
        card == ModelCard.from_dict(read_card_parameter(text)) and card.name == "tiny" and card.input_size == (64, 96)
    )
    served = repo / "tiny" / "1" / "model.onnx"
    assert onnx_io(served) == onnx_io(fixed_onnx)
    sess = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"frames": np.zeros((1, 72, 96, 3), np.uint8)})[0].shape == (1, 72, 96)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left"
    assert (repo.stat().st_mode & 0o777) != 0o700, "the repository gets the usual permissions"


def test_dynamic_export_repository(dynamic_onnx, tmp_path):
    repo = triton(dynamic_onnx, tmp_path / "repo")
    _, cfg = read_config(repo)
    assert check_against_graph(cfg, dynamic_onnx) == 8
    assert cfg["input"][0]["dims"] == [-1, -1, 3] and cfg["output"][0]["dims"] == [-1, -1]
    assert cfg["dynamic_batching"] == [{}]
    assert cfg["instance_group"] == [{"count": [1], "kind": ["KIND_AUTO"]}]
    repo4 = triton(dynamic_onnx, tmp_path / "repo4", max_shape=(4, 720, 1280))
    assert read_config(repo4)[1]["max_batch_size"] == [4]  # the engine profile's largest batch


def test_default_location_and_replacing_one_model(fixed_onnx, dynamic_onnx, tmp_path):
    import shutil

    src = tmp_path / "m.onnx"
    shutil.copy(fixed_onnx, src)
    repo = Path(export(ExportOptions(model=str(src), to="triton", progress=False)))
    assert repo == tmp_path / "tiny_triton"
    other = repo / "other_model" / "1"
    other.mkdir(parents=True)
    (other / "model.onnx").write_bytes(b"x")
    triton(dynamic_onnx, repo)  # an existing repository: only this model's folder is replaced
    assert (other / "model.onnx").read_bytes() == b"x"
    assert read_config(repo)[1]["max_batch_size"] == [8]
    assert sorted(p.name for p in repo.iterdir()) == ["other_model", "tiny"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_interrupted_write_leaves_nothing(fixed_onnx, tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        triton(fixed_onnx, tmp_path / "repo")
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_platform(fixed_onnx, tmp_path, monkeypatch):
    from roadseg.export import tensorrt

    built = []

    def fake_build(model, card, spec, opts, src):
        Path(opts.output).write_bytes(b"PLAN")
        built.append(Path(opts.output).relative_to(Path(opts.output).parents[2]))
        return Path(opts.output)

    monkeypatch.setattr(tensorrt, "build_engine", fake_build)
    monkeypatch.setattr(tensorrt, "require_tensorrt", lambda: "10.0")  # export checks for it before any work
    repo = triton(fixed_onnx, tmp_path / "repo", triton_platform="tensorrt")
    assert built == [Path("tiny/1/model.plan")] and (repo / "tiny" / "1" / "model.plan").read_bytes() == b"PLAN"
    _, cfg = read_config(repo)
    assert cfg["platform"] == ["tensorrt_plan"] and check_against_graph(cfg, fixed_onnx) == 0


def test_tensorrt_platform_without_tensorrt(fixed_onnx, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
        triton(fixed_onnx, tmp_path / "repo", triton_platform="tensorrt")
    assert list(tmp_path.iterdir()) == []


def _model_config_pb2():
    """Triton's ModelConfig protobuf module from tritonclient, loaded from its file: importing
    tritonclient.grpc needs the grpc extra, the generated module itself only protobuf."""
    import importlib.util

    spec = importlib.util.find_spec("tritonclient")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "grpc" / "model_config_pb2.py" if locations else None
    if path is None or not path.is_file():
        pytest.skip("tritonclient is not installed")
    mod_spec = importlib.util.spec_from_file_location("_roadseg_test_model_config_pb2", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - e.g. a protobuf runtime older than its generated code
        pytest.skip(f"tritonclient's model_config_pb2 does not load here ({type(e).__name__}: {e})")
    return module


def test_strict_model_config_when_tritonclient_is_installed(fixed_onnx, dynamic_onnx, tmp_path):
    model_config_pb2 = _model_config_pb2()
    from google.protobuf import text_format

    for name, src in (("fixed", fixed_onnx), ("dynamic", dynamic_onnx)):
        repo = triton(src, tmp_path / name)
        cfg = text_format.Parse((repo / "tiny" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        inputs, outputs = onnx_io(src)
        assert [i.name for i in cfg.input] == [n for n, _, _ in inputs]
        assert [o.name for o in cfg.output] == [n for n, _, _ in outputs]
        assert cfg.input[0].data_type == model_config_pb2.TYPE_UINT8
        batch = cfg.max_batch_size
        assert ([-1] if batch else []) + list(cfg.input[0].dims) == inputs[0][2]
        assert cfg.HasField("dynamic_batching") == (batch > 0)
        assert ModelCard.from_json(cfg.parameters["roadseg"].string_value).name == "tiny"
        assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO
    repo = triton(dynamic_onnx, tmp_path / "python", triton_platform="python", triton_instance="gpu")
    cfg = text_format.Parse((repo / "tiny" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg.backend == "python" and not cfg.platform and cfg.max_batch_size == 8
    assert list(cfg.input[0].dims) == [-1, -1, 3] and list(cfg.output[0].dims) == [-1, -1]
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


def test_triton_options_are_checked(fixed_onnx, tmp_path):
    from roadseg.core.errors import UsageError

    with pytest.raises(UsageError, match="--instances"):
        triton(fixed_onnx, tmp_path / "r", instances=0)
    with pytest.raises(UsageError, match="--triton-platform"):
        triton(fixed_onnx, tmp_path / "r", triton_platform="tflite")
    assert list(tmp_path.iterdir()) == []


def test_model_name_is_a_safe_folder_name():
    from roadseg.export.triton import model_name

    card = ModelCard(name="my model/v2", arch="x", classes=["a"], palette=[[0, 0, 0]])
    assert model_name(card) == "my_model_v2"
    assert model_name(replace(card, name="..")) == "model"


# -- instance kinds and the python platform ---------------------------------------------------------


def test_instance_kind_per_platform(fixed_onnx, tmp_path, monkeypatch, capsys):
    from roadseg.core.errors import UsageError
    from roadseg.export import tensorrt

    monkeypatch.setattr(tensorrt, "build_engine", lambda model, card, spec, opts, src: Path(opts.output).write_bytes(b"P"))
    monkeypatch.setattr(tensorrt, "require_tensorrt", lambda: "10.0")
    kinds = {}
    for platform, asked in (("onnxruntime", "cpu"), ("onnxruntime", "gpu"), ("tensorrt", None), ("python", None)):
        repo = triton(fixed_onnx, tmp_path / f"{platform}-{asked}", triton_platform=platform, triton_instance=asked)
        kinds[(platform, asked)] = read_config(repo)[1]["instance_group"][0]["kind"][0]
    assert kinds == {("onnxruntime", "cpu"): "KIND_CPU", ("onnxruntime", "gpu"): "KIND_GPU",
                     ("tensorrt", None): "KIND_GPU", ("python", None): "KIND_AUTO"}  # fmt: skip
    assert "a Triton server without GPUs refuses this model" in capsys.readouterr().out  # said for the explicit gpu
    with pytest.raises(UsageError, match="TensorRT plan runs only on a GPU"):
        triton(fixed_onnx, tmp_path / "r", triton_platform="tensorrt", triton_instance="cpu")
    with pytest.raises(UsageError, match="--triton-instance"):
        triton(fixed_onnx, tmp_path / "r", triton_instance="tpu")
    assert not (tmp_path / "r").exists()


def test_cpu_form_int8_graph_gets_cpu_instances(fixed_onnx, tmp_path):
    from roadseg.core.errors import UsageError
    from roadseg.runtime.model import ORT_CPU_KEY

    m = onnx.load(str(fixed_onnx))
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, ORT_CPU_KEY: "nhwc_resize"})
    src = tmp_path / "cpu_form.onnx"
    onnx.save(m, str(src))
    for platform in ("onnxruntime", "python"):
        repo = triton(src, tmp_path / platform, triton_platform=platform)
        assert read_config(repo)[1]["instance_group"][0]["kind"] == ["KIND_CPU"]
        with pytest.raises(UsageError, match="rewritten for ONNX Runtime's CPU kernels"):
            triton(src, tmp_path / f"{platform}-gpu", triton_platform=platform, triton_instance="gpu")


def test_python_platform_repository(fixed_onnx, tmp_path):
    import json
    import sys

    from roadseg.export import triton_model

    repo = triton(fixed_onnx, tmp_path / "repo", triton_platform="python", instances=2)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if "__pycache__" not in p.parts) == [
        "tiny", "tiny/1", "tiny/1/model.onnx", "tiny/1/model.py", "tiny/1/roadseg_env.json", "tiny/config.pbtxt",
    ]  # fmt: skip
    assert (repo / "tiny/1/model.py").read_bytes() == Path(triton_model.__file__).read_bytes()
    env = json.loads((repo / "tiny/1/roadseg_env.json").read_text())
    assert env["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert env["site_packages"] and all(Path(f).is_absolute() for f in env["site_packages"])
    numpy_at = Path(sys.modules["numpy"].__file__).resolve()
    assert any(Path(f).resolve() in numpy_at.parents for f in env["site_packages"])  # where this Python's packages are
    text, cfg = read_config(repo)
    assert cfg["backend"] == ["python"] and "platform" not in cfg
    # any frame size and batch: the runtime resizes for a fixed-size graph and splits batches
    assert cfg["max_batch_size"] == [8] and cfg["dynamic_batching"] == [{}]
    assert cfg["input"] == [{"name": ["frames"], "data_type": ["TYPE_UINT8"], "dims": [-1, -1, 3]}]
    assert cfg["output"] == [{"name": ["labels"], "data_type": ["TYPE_UINT8"], "dims": [-1, -1]}]
    assert cfg["instance_group"] == [{"count": [2], "kind": ["KIND_AUTO"]}]
    assert ModelCard.from_dict(read_card_parameter(text)).name == "tiny"


def test_python_platform_refuses_a_raw_graph_before_any_work(tiny_checkpoint, tmp_path, monkeypatch):
    from roadseg.core.errors import UsageError
    from roadseg.export import command

    def traced(*a, **k):
        raise AssertionError("refused only after tracing")

    monkeypatch.setattr(command, "to_onnx", traced)
    with pytest.raises(UsageError, match="without --raw"):
        export(ExportOptions(model=str(tiny_checkpoint), to="triton", triton_platform="python", raw=True,
                             output=str(tmp_path / "r"), progress=False))  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_model_py_adds_the_exporting_pythons_folders(tmp_path, monkeypatch):
    import sys

    from roadseg.export import triton_model

    site_dir, pth_target = tmp_path / "site-packages", tmp_path / "from_pth"
    site_dir.mkdir()
    pth_target.mkdir()
    (site_dir / "extra.pth").write_text(f"{pth_target}\n")  # as an editable install's .pth
    monkeypatch.setattr(sys, "path", ["/stub/own"])
    here = triton_model.this_python()
    missing = str(tmp_path / "not-here")
    assert triton_model.use_exporting_environment({"python": here, "site_packages": [missing, str(site_dir)]}) == [str(site_dir)]
    assert sys.path == [str(site_dir), str(pth_target), "/stub/own"]  # ahead of the stub's own paths
    monkeypatch.setattr(sys, "path", ["/stub/own"])
    assert triton_model.use_exporting_environment({"python": "2.7", "site_packages": [str(site_dir)]}) == []
    assert sys.path == ["/stub/own"]  # another Python's compiled packages would not load
    assert triton_model.read_env(tmp_path / "none.json") == {}


class _FakePb:
    """The parts of Triton's triton_python_backend_utils that model.py uses."""

    class TritonError:
        def __init__(self, message):
            self.message = message

    class InferenceResponse:
        def __init__(self, tensors=None, error=None):
            self.tensors, self.error = tensors, error

    class Tensor:
        @staticmethod
        def from_dlpack(name, array):
            return name, np.from_dlpack(array)

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.get(name)


def test_model_py_batches_requests_of_one_frame_size_and_fails_bad_ones_alone():
    from roadseg.export.triton_model import TritonPythonModel

    calls = []

    def segment(frames):
        calls.append(frames.shape)
        return frames[..., 0] // 100  # labels that depend on each frame

    model = TritonPythonModel()
    model.np, model.pb, model.segmenter, model.input, model.output = np, _FakePb, segment, "frames", "labels"
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 8, 10, 3), np.uint8), rng.integers(0, 255, (1, 8, 10, 3), np.uint8)
    c = rng.integers(0, 255, (1, 6, 4, 3), np.uint8)
    requests = [{"frames": a}, {"frames": np.zeros((1, 8, 10, 4), np.uint8)}, {"frames": c}, {"frames": b}, {}]
    responses = model.execute(requests)
    assert sorted(calls) == [(1, 6, 4, 3), (3, 8, 10, 3)]  # one runtime call per frame size
    for response, frames in ((responses[0], a), (responses[2], c), (responses[3], b)):
        assert response.error is None
        ((name, labels),) = response.tensors
        assert name == "labels" and np.array_equal(labels, frames[..., 0] // 100)  # each request its own labels
    assert "must be uint8 [N,H,W,3]" in responses[1].error.message  # a bad frame fails alone
    assert "has no input 'frames'" in responses[4].error.message

    def broken(frames):
        raise RuntimeError("out of memory")

    model.segmenter = broken
    (response,) = model.execute([{"frames": a}])
    assert response.error.message == "roadseg: out of memory"


def test_model_py_says_how_to_install_roadseg_where_it_is_missing(monkeypatch, tmp_path):
    import sys

    from roadseg.export import triton_model

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as in a stub's Python without it
    where = tmp_path / "1" / "model.py"
    with pytest.raises(ImportError) as err:
        triton_model.check_imports({"python": triton_model.this_python(), "site_packages": ["/gone"]}, where)
    msg = str(err.value)
    assert str(where) in msg and "onnxruntime" in msg and "python3 -m pip install roadseg" in msg
    assert "roadseg_env.json" in msg and "/gone" in msg and "\n" not in msg
    with pytest.raises(ImportError, match="exported by Python 2.7, whose packages this stub cannot load"):
        triton_model.check_imports({"python": "2.7", "site_packages": []}, where)


def test_cli_triton_options(tmp_path, capsys):
    from roadseg.cli import main
    from roadseg.runtime.defaults import VARIANT_FILES, variants_dir

    int8 = variants_dir() / VARIANT_FILES["int8"]  # rewritten for ONNX Runtime's CPU kernels
    rc = main(["export", str(int8), "--to", "triton", "--triton-platform", "python", "--triton-instance", "gpu",
               "-o", str(tmp_path / "gpu")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--triton-instance gpu" in err, err
    rc = main(["export", str(int8), "--to", "triton", "--triton-platform", "python", "-o", str(tmp_path / "repo")])
    out = capsys.readouterr().out
    assert rc == 0 and "KIND_CPU instances" in out and "Python backend" in out
    assert (tmp_path / "repo" / "ddrnet23s_camvid" / "1" / "model.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
