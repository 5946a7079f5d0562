package dev.edgesdk.kws.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * What the app needs from a bundle's {@code edgesdk.json}: the step's inputs, outputs and state
 * pairs (in manifest order), the streaming and front-end facts, and each artifact's own tensor
 * names. A missing key is an error naming the key, never a silent default.
 */
public final class BundleManifest {
    /** One tensor the step takes or returns. */
    public static final class TensorEntry {
        public final String name;
        public final String dtype;
        public final List<Object> shape;   // Integer, or String for a symbolic dimension

        TensorEntry(String name, String dtype, List<Object> shape) {
            this.name = name;
            this.dtype = dtype;
            this.shape = shape;
        }

        /** The shape with symbolic dimensions (batch) set to {@code batch}. */
        public int[] concreteShape(int batch) {
            int[] result = new int[shape.size()];
            for (int i = 0; i < result.length; i++) {
                Object d = shape.get(i);
                result[i] = d instanceof Integer ? (Integer) d : batch;
            }
            return result;
        }
    }

    /** One state pair: {@code output} of step t is fed as {@code input} of step t + 1. */
    public static final class StateEntry {
        public final String name;
        public final String input;
        public final String output;
        public final int[] shape;
        public final String dtype;
        public final int batchAxis;
        public final double init;

        StateEntry(String name, String input, String output, int[] shape, String dtype,
                   int batchAxis, double init) {
            this.name = name;
            this.input = input;
            this.output = output;
            this.shape = shape;
            this.dtype = dtype;
            this.batchAxis = batchAxis;
            this.init = init;
        }

        public int[] shapeForBatch(int batch) {
            int[] result = shape.clone();
            result[batchAxis] = batch;
            return result;
        }
    }

    public final Map<String, Object> root;
    public final List<TensorEntry> inputs;
    public final List<TensorEntry> outputs;
    public final List<StateEntry> states;
    private final String source;

    private BundleManifest(Map<String, Object> root, String source) {
        this.root = root;
        this.source = source;
        this.inputs = tensors("inputs");
        this.outputs = tensors("outputs");
        List<StateEntry> stateList = new ArrayList<>();
        Object rawStates = root.get("state");
        if (rawStates != null) {
            for (Object item : list(rawStates, "state")) {
                Map<String, Object> s = map(item, "state[]");
                List<Object> dims = list(require(s, "shape", "state[].shape"), "state[].shape");
                int[] shape = new int[dims.size()];
                for (int i = 0; i < shape.length; i++) {
                    shape[i] = ((Double) dims.get(i)).intValue();
                }
                Object init = s.get("init");
                Object batchAxis = s.get("batch_axis");
                stateList.add(new StateEntry(
                        string(s, "name"), string(s, "input"), string(s, "output"), shape,
                        string(s, "dtype"),
                        batchAxis == null ? 0 : ((Double) batchAxis).intValue(),
                        init == null ? 0.0 : (Double) init));
            }
        }
        this.states = Collections.unmodifiableList(stateList);
    }

    /** Parses the text of an edgesdk.json; {@code source} names it in error messages. */
    @SuppressWarnings("unchecked")
    public static BundleManifest parse(String json, String source) {
        Object root = MiniJson.parse(json);
        if (!(root instanceof Map)) {
            throw new IllegalArgumentException(source + ": the manifest is not a JSON object");
        }
        return new BundleManifest((Map<String, Object>) root, source);
    }

    /** The state-free inputs, i.e. what the app feeds each step (e.g. "features"). */
    public List<TensorEntry> streamInputs() {
        List<TensorEntry> result = new ArrayList<>();
        for (TensorEntry entry : inputs) {
            if (!isStateName(entry.name) && !entry.name.equals(endInput())) {
                result.add(entry);
            }
        }
        return result;
    }

    /**
     * The step input that ends a stream (streaming.end_input), or null: the session feeds it 0
     * while the input lasts (edgesdk's Stream.end() feeds 1, 2, ... past the end).
     */
    public String endInput() {
        Object streaming = root.get("streaming");
        if (!(streaming instanceof Map)) {
            return null;
        }
        Object name = ((Map<?, ?>) streaming).get("end_input");
        return name instanceof String ? (String) name : null;
    }

    /** The manifest entry of {@link #endInput()}, or null. */
    public TensorEntry endInputEntry() {
        String name = endInput();
        for (TensorEntry entry : inputs) {
            if (entry.name.equals(name)) {
                return entry;
            }
        }
        return null;
    }

    /** The non-state outputs (e.g. logits). */
    public List<TensorEntry> streamOutputs() {
        List<TensorEntry> result = new ArrayList<>();
        for (TensorEntry entry : outputs) {
            if (!isStateName(entry.name)) {
                result.add(entry);
            }
        }
        return result;
    }

    private boolean isStateName(String name) {
        for (StateEntry s : states) {
            if (s.input.equals(name) || s.output.equals(name)) {
                return true;
            }
        }
        return false;
    }

    /** A top-level section such as "streaming" or "frontend". */
    public Map<String, Object> section(String key) {
        return map(require(root, key, key), key);
    }

    /**
     * The Kaldi fbank front-end the bundle's {@code frontend} section describes (keys as written
     * by edgesdk.runtime.audio.KaldiFbankFrontend.to_manifest).
     */
    public KaldiFbank fbank() {
        Map<String, Object> f = section("frontend");
        if (!"kaldi_fbank".equals(f.get("type"))) {
            throw new IllegalArgumentException(source + ": frontend type " + f.get("type") + " is not kaldi_fbank");
        }
        if (!"hanning".equals(f.get("window")) || number(f, "frontend.dither") != 0.0) {
            throw new IllegalArgumentException(source + ": only the Hann window without dither is supported");
        }
        return new KaldiFbank(
                number(f, "frontend.sample_rate_hz").intValue(),
                number(f, "frontend.frame_length_samples").intValue(),
                number(f, "frontend.hop_samples").intValue(),
                number(f, "frontend.num_mel_bins").intValue(),
                number(f, "frontend.low_freq_hz"),
                number(f, "frontend.high_freq_hz"),
                number(f, "frontend.preemphasis"),
                number(f, "frontend.normalize_mean"),
                // to_manifest says: normalization = (fbank - normalize_mean) / (2 * normalize_std)
                2.0 * number(f, "frontend.normalize_std"));
    }

    /**
     * The model-input value of a padded (all-zero fbank) frame, (0 - mean) / (2 std): what
     * training appended to clips shorter than {@link #clipFrames()}.
     */
    public double padValue() {
        Map<String, Object> f = section("frontend");
        return -number(f, "frontend.normalize_mean") / (2.0 * number(f, "frontend.normalize_std"));
    }

    /** Frames the model was trained on per clip (the decision window), from the frontend section. */
    public int clipFrames() {
        return number(section("frontend"), "frontend.clip_frames").intValue();
    }

    /** Frames the stream answers behind its input (the streaming section's lookahead_frames). */
    public int lookaheadFrames() {
        return number(section("streaming"), "streaming.lookahead_frames").intValue();
    }

    /** Class names in index order (the extra section's labels). */
    public List<String> labels() {
        List<String> result = new ArrayList<>();
        for (Object label : list(require(section("extra"), "labels", "extra.labels"), "extra.labels")) {
            result.add((String) label);
        }
        return result;
    }

    private Double number(Map<String, Object> m, String path) {
        String key = path.substring(path.lastIndexOf('.') + 1);
        Object value = require(m, key, path);
        if (!(value instanceof Double)) {
            throw new IllegalArgumentException(source + ": manifest key " + path + " is not a number");
        }
        return (Double) value;
    }

    /**
     * The artifact's own name for a logical tensor name (LiteRT signature runners call them
     * args_0, output_0, ...).
     *
     * @param format "tflite" or "onnx"
     * @param direction "inputs" or "outputs"
     */
    public String backendName(String format, String direction, String logicalName) {
        Map<String, Object> artifact = artifact(format);
        Map<String, Object> names = map(require(artifact, direction, "artifacts." + format + "." + direction),
                "artifacts." + format + "." + direction);
        Object name = names.get(logicalName);
        if (!(name instanceof String)) {
            throw new IllegalArgumentException(source + ": artifacts." + format + "." + direction
                    + " has no entry for " + logicalName);
        }
        return (String) name;
    }

    /** The artifact entry of a format (artifacts may be a list of entries or a map by format). */
    public Map<String, Object> artifact(String format) {
        Object artifacts = require(root, "artifacts", "artifacts");
        if (artifacts instanceof Map) {
            Map<String, Object> byFormat = map(artifacts, "artifacts");
            if (byFormat.containsKey(format)) {
                return map(byFormat.get(format), "artifacts." + format);
            }
            artifacts = new ArrayList<>(byFormat.values());
        }
        for (Object item : list(artifacts, "artifacts")) {
            Map<String, Object> entry = map(item, "artifacts[]");
            if (format.equals(entry.get("format"))) {
                return entry;
            }
        }
        throw new IllegalArgumentException(source + ": no " + format + " artifact in the manifest");
    }

    private List<TensorEntry> tensors(String key) {
        List<TensorEntry> result = new ArrayList<>();
        for (Object item : list(require(root, key, key), key)) {
            Map<String, Object> t = map(item, key + "[]");
            List<Object> shape = new ArrayList<>();
            for (Object d : list(require(t, "shape", key + "[].shape"), key + "[].shape")) {
                shape.add(d instanceof Double ? (Object) ((Double) d).intValue() : d);
            }
            result.add(new TensorEntry(string(t, "name"), string(t, "dtype"), shape));
        }
        return Collections.unmodifiableList(result);
    }

    private Object require(Map<String, Object> m, String key, String path) {
        if (!m.containsKey(key)) {
            throw new IllegalArgumentException(source + ": missing manifest key " + path);
        }
        return m.get(key);
    }

    private String string(Map<String, Object> m, String key) {
        Object value = require(m, key, key);
        if (!(value instanceof String)) {
            throw new IllegalArgumentException(source + ": manifest key " + key + " is not a string");
        }
        return (String) value;
    }

    @SuppressWarnings("unchecked")
    private Map<String, Object> map(Object value, String path) {
        if (!(value instanceof Map)) {
            throw new IllegalArgumentException(source + ": manifest key " + path + " is not an object");
        }
        return (Map<String, Object>) value;
    }

    @SuppressWarnings("unchecked")
    private List<Object> list(Object value, String path) {
        if (!(value instanceof List)) {
            throw new IllegalArgumentException(source + ": manifest key " + path + " is not a list");
        }
        return (List<Object>) value;
    }
}
