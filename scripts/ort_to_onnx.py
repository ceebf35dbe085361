#!/usr/bin/env python3
"""Rebuild a plain ONNX model from an ONNX Runtime "ORT format" (flatbuffer) model.

Usage: ort_to_onnx.py INPUT.ort OUTPUT.onnx [--check encoder|decoder|none]

Run by `skald models fetch` inside the virtualenv it creates (onnx, flatbuffers,
numpy and the onnxruntime wheel, all from PyPI). ONNX Runtime decodes the
Moonshine `.ort` files about 10x slower than the same graphs as `.onnx`, so the
setup converts them once.

What it reads: the ORT flatbuffer schema's Python reader that ships inside the
onnxruntime wheel (`onnxruntime/tools/ort_format_model/ort_flatbuffers_py/fbs`,
schema `onnxruntime/core/flatbuffers/schema/ort.fbs`): Model (IR version,
opset imports, producer, metadata), Graph (nodes, node args = value infos,
inputs, outputs, initializers, sparse initializers), Node (name, domain, op
type, inputs, outputs, attributes incl. subgraphs), Tensor (dims, data type,
raw data, string data). It rebuilds an `onnx.ModelProto`, topologically sorts
each graph, runs `onnx.checker.check_model` and saves it.

Then, unless `--check none`, it proves equivalence: it runs the `.ort` and the
`.onnx` in onnxruntime on the same random inputs and asserts every output
matches within 1e-4 (encoder: float32 audio [1, 16000]; decoder: 20 greedy
steps, first without then with the KV cache), and prints the timings.
Exit status 0 only when everything above succeeded; errors go to stderr.
"""

import argparse
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import (
    AttributeType,
    DimensionValueType,
    InferenceSession,
    TypeInfoValue,
)

TOLERANCE = 1e-4


def s(b):
    """flatbuffers returns bytes (or None) for strings."""
    return b.decode("utf-8") if b is not None else ""


def convert_tensor(t):
    """fbs.Tensor -> onnx.TensorProto (raw data or string data)."""
    p = TensorProto()
    p.name = s(t.Name())
    if t.DocString():
        p.doc_string = s(t.DocString())
    p.data_type = t.DataType()
    p.dims.extend(int(t.Dims(i)) for i in range(t.DimsLength()))
    if t.ExternalDataOffset() >= 0:
        # ORT format can point large initializers into a separate data file;
        # the Moonshine files do not, and there is no file to read it from.
        raise ValueError(f"initializer {p.name}: external data is not supported")
    if t.StringDataLength() > 0:
        p.string_data.extend(t.StringData(i) for i in range(t.StringDataLength()))
    elif not t.RawDataIsNone():
        p.raw_data = t.RawDataAsNumpy().tobytes()
    return p


def convert_sparse(st):
    """fbs.SparseTensor -> onnx.SparseTensorProto."""
    p = onnx.SparseTensorProto()
    p.values.CopyFrom(convert_tensor(st.Values()))
    p.indices.CopyFrom(convert_tensor(st.Indices()))
    p.dims.extend(int(st.Dims(i)) for i in range(st.DimsLength()))
    return p


def convert_type(ti):
    """fbs.TypeInfo -> onnx.TypeProto (tensor, sequence or map)."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import (
        MapType,
        SequenceType,
        TensorTypeAndShape,
    )

    kind = ti.ValueType()
    tp = onnx.TypeProto()
    if kind == TypeInfoValue.TypeInfoValue.tensor_type:
        tt = TensorTypeAndShape.TensorTypeAndShape()
        tt.Init(ti.Value().Bytes, ti.Value().Pos)
        tp.tensor_type.elem_type = tt.ElemType()
        shape = tt.Shape()
        if shape is not None:
            tp.tensor_type.shape.SetInParent()
            for i in range(shape.DimLength()):
                d = shape.Dim(i)
                dim = tp.tensor_type.shape.dim.add()
                if d.Denotation():
                    dim.denotation = s(d.Denotation())
                v = d.Value()
                if v is None:
                    continue
                if v.DimType() == DimensionValueType.DimensionValueType.VALUE:
                    dim.dim_value = v.DimValue()
                elif v.DimType() == DimensionValueType.DimensionValueType.PARAM:
                    dim.dim_param = s(v.DimParam())
    elif kind == TypeInfoValue.TypeInfoValue.sequence_type:
        st = SequenceType.SequenceType()
        st.Init(ti.Value().Bytes, ti.Value().Pos)
        tp.sequence_type.elem_type.CopyFrom(convert_type(st.ElemType()))
    elif kind == TypeInfoValue.TypeInfoValue.map_type:
        mt = MapType.MapType()
        mt.Init(ti.Value().Bytes, ti.Value().Pos)
        tp.map_type.key_type = mt.KeyType()
        tp.map_type.value_type.CopyFrom(convert_type(mt.ValueType()))
    if ti.Denotation():
        tp.denotation = s(ti.Denotation())
    return tp


def convert_value_info(vi):
    p = onnx.ValueInfoProto()
    p.name = s(vi.Name())
    if vi.DocString():
        p.doc_string = s(vi.DocString())
    if vi.Type() is not None:
        p.type.CopyFrom(convert_type(vi.Type()))
    return p


def convert_attribute(a, domains):
    A = AttributeType.AttributeType
    name = s(a.Name())
    t = a.Type()
    p = onnx.AttributeProto()
    p.name = name
    p.type = t  # the fbs enum uses the same numbers as onnx.AttributeProto
    if a.DocString():
        p.doc_string = s(a.DocString())
    if t == A.FLOAT:
        p.f = a.F()
    elif t == A.INT:
        p.i = a.I()
    elif t == A.STRING:
        p.s = a.S() or b""
    elif t == A.TENSOR:
        p.t.CopyFrom(convert_tensor(a.T()))
    elif t == A.GRAPH:
        p.g.CopyFrom(convert_graph(a.G(), domains))
    elif t == A.FLOATS:
        p.floats.extend(float(a.Floats(i)) for i in range(a.FloatsLength()))
    elif t == A.INTS:
        p.ints.extend(int(a.Ints(i)) for i in range(a.IntsLength()))
    elif t == A.STRINGS:
        p.strings.extend(a.Strings(i) for i in range(a.StringsLength()))
    elif t == A.TENSORS:
        p.tensors.extend(convert_tensor(a.Tensors(i)) for i in range(a.TensorsLength()))
    elif t == A.GRAPHS:
        p.graphs.extend(convert_graph(a.Graphs(i), domains) for i in range(a.GraphsLength()))
    else:
        raise ValueError(f"attribute {name}: type {t} is not in the ORT format")
    return p


def convert_node(n, domains):
    p = onnx.NodeProto()
    p.name = s(n.Name())
    if n.DocString():
        p.doc_string = s(n.DocString())
    p.op_type = s(n.OpType())
    p.domain = s(n.Domain())
    domains.setdefault(p.domain, set()).add(n.SinceVersion())
    # Optional inputs/outputs keep their empty names; implicit inputs (outer
    # scope values used by subgraphs) are implicit in ONNX too.
    p.input.extend(s(n.Inputs(i)) for i in range(n.InputsLength()))
    p.output.extend(s(n.Outputs(i)) for i in range(n.OutputsLength()))
    for i in range(n.AttributesLength()):
        p.attribute.append(convert_attribute(n.Attributes(i), domains))
    if n.Type() != 0:
        raise ValueError(f"node {p.name}: fused nodes cannot be expressed in ONNX")
    return p


def topo_sort(nodes, known):
    """Kahn's order over value names; `known` are graph inputs, initializers
    and outer-scope names. Nodes whose inputs come from the outer scope (only
    in subgraphs) are treated as ready."""
    produced_by = {}
    for idx, n in enumerate(nodes):
        for o in n.output:
            if o:
                produced_by[o] = idx
    order = []
    available = set(known)
    remaining = list(range(len(nodes)))
    while remaining:
        progressed = False
        rest = []
        for idx in remaining:
            n = nodes[idx]
            deps = [i for i in n.input if i and i in produced_by and i not in available]
            if deps:
                rest.append(idx)
                continue
            order.append(n)
            available.update(o for o in n.output if o)
            progressed = True
        if not progressed:
            raise ValueError("graph has a cycle")
        remaining = rest
    return order


def convert_graph(g, domains, name="main_graph"):
    inits = [convert_tensor(g.Initializers(i)) for i in range(g.InitializersLength())]
    sparse = [convert_sparse(g.SparseInitializers(i)) for i in range(g.SparseInitializersLength())]
    value_infos = {}
    for i in range(g.NodeArgsLength()):
        vi = convert_value_info(g.NodeArgs(i))
        value_infos[vi.name] = vi
    nodes = [convert_node(g.Nodes(i), domains) for i in range(g.NodesLength())]
    inputs = [s(g.Inputs(i)) for i in range(g.InputsLength())]
    outputs = [s(g.Outputs(i)) for i in range(g.OutputsLength())]

    def vi_for(n):
        if n in value_infos:
            return value_infos[n]
        return helper.make_empty_tensor_value_info(n)

    init_names = {t.name for t in inits} | {t.values.name for t in sparse}
    nodes = topo_sort(nodes, set(inputs) | init_names)
    io = set(inputs) | set(outputs) | init_names
    graph = helper.make_graph(
        nodes,
        name,
        [vi_for(n) for n in inputs],
        [vi_for(n) for n in outputs],
        initializer=inits,
        sparse_initializer=sparse,
        value_info=[v for k, v in value_infos.items() if k not in io and v.HasField("type")],
    )
    return graph


def convert(ort_path, onnx_path):
    buf = open(ort_path, "rb").read()
    if not InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
        raise ValueError(f"{ort_path}: not an ORT format model (no ORTM identifier)")
    sess = InferenceSession.InferenceSession.GetRootAs(buf, 0)
    m = sess.Model()
    domains = {}
    graph = convert_graph(m.Graph(), domains)
    declared = {}
    for i in range(m.OpsetImportLength()):
        o = m.OpsetImport(i)
        declared[s(o.Domain())] = o.Version()
    # Keep the opsets the graph uses (plus the default domain): ORT declares
    # every domain it knows, including ones the onnx checker has no schema for.
    opsets = []
    for d in sorted(set(domains) | {""}):
        dom = "" if d == "ai.onnx" else d
        if dom not in declared:
            raise ValueError(f"domain {d!r} used but not imported")
        opsets.append(helper.make_opsetid(dom, declared[dom]))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = m.IrVersion()
    model.producer_name = s(m.ProducerName())
    model.producer_version = s(m.ProducerVersion())
    model.domain = s(m.Domain())
    model.model_version = m.ModelVersion()
    if m.DocString():
        model.doc_string = s(m.DocString())
    if m.GraphDocString():
        model.graph.doc_string = s(m.GraphDocString())
    for i in range(m.MetadataPropsLength()):
        e = m.MetadataProps(i)
        model.metadata_props.add(key=s(e.Key()), value=s(e.Value()))
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, onnx_path)
    return model


# ---------------------------------------------------------------------------
# Equivalence check


def session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def compare(a_outs, b_outs, names, what):
    worst = 0.0
    for name, a, b in zip(names, a_outs, b_outs):
        if a.shape != b.shape:
            raise AssertionError(f"{what}: output {name} shape {a.shape} vs {b.shape}")
        if a.size:
            d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            worst = max(worst, d)
            if not d <= TOLERANCE:
                raise AssertionError(f"{what}: output {name} differs by {d}")
    return worst


def check_encoder(ort_path, onnx_path):
    a, b = session(ort_path), session(onnx_path)
    rng = np.random.default_rng(7)
    inp = a.get_inputs()[0]
    audio = (rng.standard_normal((1, 16000)) * 0.1).astype(np.float32)
    names = [o.name for o in a.get_outputs()]
    t0 = time.perf_counter()
    oa = a.run(None, {inp.name: audio})
    t1 = time.perf_counter()
    ob = b.run(None, {inp.name: audio})
    t2 = time.perf_counter()
    worst = compare(oa, ob, names, "encoder")
    print(
        f"encoder: outputs match (max abs diff {worst:.2e}); 1 s of audio: "
        f".ort {1000 * (t1 - t0):.0f} ms, .onnx {1000 * (t2 - t1):.0f} ms"
    )


def decoder_feeds(sess, hidden):
    """Valid first-step inputs: start token, encoder states, empty past,
    use_cache_branch = False."""
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = np.array([[1]], dtype=np.int64)
        elif i.name == "encoder_hidden_states":
            feeds[i.name] = hidden
        elif i.name == "use_cache_branch":
            feeds[i.name] = np.array([False])
        elif i.name.startswith("past_key_values"):
            shape = []
            for k, d in enumerate(i.shape):
                if isinstance(d, int):
                    shape.append(d)
                elif k == 0:
                    shape.append(1)  # batch
                else:
                    shape.append(0)  # sequence length: empty past
            feeds[i.name] = np.zeros(shape, dtype=NP_TYPES[i.type])
        else:
            raise AssertionError(f"decoder: unexpected input {i.name} {i.type} {i.shape}")
    return feeds


def run_decoder(sess, hidden, steps):
    """Greedy decode `steps` tokens; returns (outputs per step, output
    names, total seconds, median seconds per step)."""
    names = [o.name for o in sess.get_outputs()]
    feeds = decoder_feeds(sess, hidden)
    all_outs = []
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        outs = sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
        all_outs.append(outs)
        logits = outs[0]
        nxt = int(np.argmax(logits[0, -1]))
        feeds["input_ids"] = np.array([[nxt]], dtype=np.int64)
        feeds["use_cache_branch"] = np.array([True])
        for name, val in zip(names[1:], outs[1:]):
            past = name.replace("present", "past_key_values")
            if ".encoder." in name and feeds[past].shape[2] != 0:
                continue  # cross-attention cache: computed once
            feeds[past] = val
    return all_outs, names, sum(times), float(np.median(times))


def check_decoder(ort_path, onnx_path, encoder_onnx):
    rng = np.random.default_rng(11)
    if encoder_onnx:
        enc = session(encoder_onnx)
        audio = (rng.standard_normal((1, 16000)) * 0.1).astype(np.float32)
        hidden = enc.run(None, {enc.get_inputs()[0].name: audio})[0]
    else:
        a = session(ort_path)
        h = [i for i in a.get_inputs() if i.name == "encoder_hidden_states"][0]
        width = h.shape[2] if isinstance(h.shape[2], int) else 416
        hidden = rng.standard_normal((1, 40, width)).astype(np.float32)
    steps = 20
    a, b = session(ort_path), session(onnx_path)
    oa, names, ta, ma = run_decoder(a, hidden, steps)
    ob, _, tb, mb = run_decoder(b, hidden, steps)
    worst = 0.0
    for k, (x, y) in enumerate(zip(oa, ob)):
        worst = max(worst, compare(x, y, names, f"decoder step {k}"))
    print(
        f"decoder: {steps} steps match (max abs diff {worst:.2e}); "
        f"{steps} steps: .ort {1000 * ta:.0f} ms, .onnx {1000 * tb:.0f} ms ({ta / tb:.1f}x faster as .onnx); "
        f"median step: .ort {1000 * ma:.1f} ms, .onnx {1000 * mb:.1f} ms ({ma / mb:.1f}x)"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--check", choices=["encoder", "decoder", "none"], default="none")
    ap.add_argument("--encoder", help="converted encoder .onnx, for realistic decoder inputs")
    args = ap.parse_args()
    tmp = args.output + ".tmp.onnx"
    convert(args.input, tmp)
    if args.check == "encoder":
        check_encoder(args.input, tmp)
    elif args.check == "decoder":
        check_decoder(args.input, tmp, args.encoder)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one clear line for the Rust caller
        print(f"ort_to_onnx: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
