package dev.edgesdk.kws.core;

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
     * One step.
     *
     * @param inputs every state-free input of the manifest, by logical name
     * @return the state-free outputs, by logical name
     */
    public Map<String, Tensor> push(Map<String, Tensor> inputs) {
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
        BundleManifest.TensorEntry end = manifest.endInputEntry();
        if (end != null) {
            feeds.put(end.name, Tensor.full(end.dtype, end.concreteShape(1), 0.0));  // the input lasts
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
        List<String> names = new java.util.ArrayList<>();
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
