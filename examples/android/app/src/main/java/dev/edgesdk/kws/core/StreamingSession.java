package dev.edgesdk.kws.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The streaming loop of an edgesdk bundle, independent of the inference engine.
 *
 * <p>Each {@link #push} feeds the step its inputs plus every state, by the names in the manifest,
 * and keeps each state output as the next step's state input. State starts at each entry's
 * {@code init}. The engine is behind {@link StepRunner}: on Android a LiteRT signature runner
 * (see MainActivity.kt), in the tests a replay of what the Python runtime fed and got.
 */
public final class StreamingSession {
    /** Runs one step: logical input name -> tensor in, logical output name -> tensor out. */
    public interface StepRunner {
        Map<String, Tensor> run(Map<String, Tensor> feeds);
    }

    private final BundleManifest manifest;
    private final StepRunner runner;
    private final Map<String, Tensor> state = new LinkedHashMap<>();   // by state name
    private long steps;

    public StreamingSession(BundleManifest manifest, StepRunner runner) {
        this.manifest = manifest;
        this.runner = runner;
        reset();
    }

    /** Zeroes every state to its manifest init (a new utterance). */
    public void reset() {
        state.clear();
        for (BundleManifest.StateEntry s : manifest.states) {
            state.put(s.name, Tensor.full(s.dtype, s.shapeForBatch(1), s.init));
        }
        steps = 0;
    }

    public long steps() {
        return steps;
    }

    /** The current state, by state name (read-only view). */
    public Map<String, Tensor> state() {
        return Collections.unmodifiableMap(state);
    }

    /**
     * One step of live input.
     *
     * @param inputs every state-free input of the manifest, by logical name
     * @return the state-free outputs, by logical name
     */
    public Map<String, Tensor> push(Map<String, Tensor> inputs) {
        BundleManifest.TensorEntry end = manifest.endInputEntry();
        // The end input is 0 while the input lasts.
        return step(inputs, end == null ? null : Tensor.full(end.dtype, end.concreteShape(1), 0.0));
    }

    /**
     * Ends the input: the outputs still owed for the look-ahead frames, then {@link #reset()}.
     *
     * <p>As edgesdk's {@code Stream.end()}: a step that answers {@code lookahead} frames behind
     * its input owes that many answers when the input ends. Whole steps are pushed past the end
     * with zero inputs and the end input counting the frames past the end (1, 2, ...), so each
     * convolution pads its own input with zeros as the full-clip model does; each output is cut
     * to its first {@code lookahead} frames on axis 1. Empty when nothing is owed (no look-ahead,
     * or nothing pushed).
     */
    public Map<String, Tensor> end() {
        int owed = manifest.lookaheadFrames();
        if (owed == 0 || steps == 0) {
            reset();
            return Collections.emptyMap();
        }
        BundleManifest.TensorEntry end = manifest.endInputEntry();
        if (end == null) {
            throw new IllegalStateException("the step answers " + owed + " frames behind its input but the bundle "
                    + "has no end input (streaming.end_input): re-export it with a current edgesdk");
        }
        int[] endShape = end.concreteShape(1);
        int framesPerStep = endShape[endShape.length - 1];
        Map<String, List<float[]>> pieces = new LinkedHashMap<>();
        Map<String, int[]> shapes = new LinkedHashMap<>();
        for (int first = 1; first <= owed; first += framesPerStep) {
            Map<String, Tensor> zeros = new LinkedHashMap<>();
            for (BundleManifest.TensorEntry entry : manifest.streamInputs()) {
                zeros.put(entry.name, Tensor.full(entry.dtype, entry.concreteShape(1), 0.0));
            }
            float[] counts = new float[Tensor.size(endShape)];
            for (int i = 0; i < counts.length; i++) {
                counts[i] = first + i % framesPerStep;
            }
            for (Map.Entry<String, Tensor> out : step(zeros, Tensor.ofFloats(endShape, counts)).entrySet()) {
                pieces.computeIfAbsent(out.getKey(), k -> new ArrayList<>()).add(out.getValue().floats);
                shapes.put(out.getKey(), out.getValue().shape);
            }
        }
        reset();
        // Batch 1, row-major: the frames of axis 1 are contiguous, so joining the steps' outputs
        // along axis 1 appends their data, and the first `owed` frames are a prefix.
        Map<String, Tensor> result = new LinkedHashMap<>();
        for (Map.Entry<String, List<float[]>> entry : pieces.entrySet()) {
            int[] stepShape = shapes.get(entry.getKey());
            int perFrame = Tensor.size(stepShape) / stepShape[1];
            float[] data = new float[owed * perFrame];
            int filled = 0;
            for (float[] piece : entry.getValue()) {
                int take = Math.min(piece.length, data.length - filled);
                System.arraycopy(piece, 0, data, filled, take);
                filled += take;
            }
            int[] shape = stepShape.clone();
            shape[1] = owed;
            result.put(entry.getKey(), Tensor.ofFloats(shape, data));
        }
        return result;
    }

    private Map<String, Tensor> step(Map<String, Tensor> inputs, Tensor endFeed) {
        Map<String, Tensor> feeds = new LinkedHashMap<>();
        for (BundleManifest.TensorEntry entry : manifest.streamInputs()) {
            Tensor value = inputs.get(entry.name);
            if (value == null) {
                throw new IllegalArgumentException("missing input " + entry.name);
            }
            int[] expected = entry.concreteShape(1);
            if (!Arrays.equals(value.shape, expected)) {
                throw new IllegalArgumentException("input " + entry.name + " has shape "
                        + Arrays.toString(value.shape) + ", the manifest says " + Arrays.toString(expected));
            }
            feeds.put(entry.name, value);
        }
        if (endFeed != null) {
            feeds.put(manifest.endInput(), endFeed);
        }
        for (BundleManifest.StateEntry s : manifest.states) {
            feeds.put(s.input, state.get(s.name));
        }
        Map<String, Tensor> results = runner.run(feeds);
        // Check every new state before replacing any, so a bad step leaves the old state intact.
        for (BundleManifest.StateEntry s : manifest.states) {
            Tensor next = results.get(s.output);
            if (next == null) {
                throw new IllegalStateException("the step returned no " + s.output);
            }
            if (!next.sameLayout(state.get(s.name))) {
                throw new IllegalStateException(s.output + " is " + next + ", the state " + s.name
                        + " is " + state.get(s.name));
            }
        }
        for (BundleManifest.StateEntry s : manifest.states) {
            state.put(s.name, results.get(s.output));
        }
        steps++;
        Map<String, Tensor> outputs = new LinkedHashMap<>();
        for (BundleManifest.TensorEntry entry : manifest.streamOutputs()) {
            Tensor value = results.get(entry.name);
            if (value == null) {
                throw new IllegalStateException("the step returned no " + entry.name);
            }
            outputs.put(entry.name, value);
        }
        return outputs;
    }

    /** The logical names fed to the step, in order: state-free inputs, the end input, then state inputs. */
    public List<String> feedOrder() {
        List<String> names = new ArrayList<>();
        for (BundleManifest.TensorEntry entry : manifest.streamInputs()) {
            names.add(entry.name);
        }
        if (manifest.endInput() != null) {
            names.add(manifest.endInput());
        }
        for (BundleManifest.StateEntry s : manifest.states) {
            names.add(s.input);
        }
        return names;
    }
}
