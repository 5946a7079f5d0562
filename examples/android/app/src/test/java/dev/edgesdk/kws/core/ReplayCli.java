package dev.edgesdk.kws.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Desktop check of the app's streaming loop against a recording of the Python runtime.
 *
 * <pre>
 *   ReplayCli edgesdk.json REPLAY_DIR IN.pcm [THRESHOLD HOLD_FRAMES]
 * </pre>
 * REPLAY_DIR/step_T/in/NAME.f32 and REPLAY_DIR/step_T/out/NAME.f32 hold what edgesdk's Python
 * Stream fed and got at step T (float32 little-endian, shapes from the manifest). The Java side
 * computes its own features from IN.pcm with StreamingFbank and runs StreamingSession with a
 * runner that, instead of a model, compares every feed with the recording and returns the
 * recorded outputs. So each state input the Java loop sends must be exactly the state output the
 * previous step returned under the manifest's pairing. After the clip's own frames it pads, and
 * at a full window ends the stream, as edgesdk's Python spotter does, where the recording goes
 * on. Prints one JSON object with the findings.
 */
public final class ReplayCli {
    public static void main(String[] args) throws IOException {
        if (args.length != 3 && args.length != 5) {
            System.err.println("usage: ReplayCli edgesdk.json REPLAY_DIR IN.pcm [THRESHOLD HOLD_FRAMES]");
            System.exit(2);
        }
        Path manifestPath = Paths.get(args[0]);
        BundleManifest manifest = BundleManifest.parse(
                new String(Files.readAllBytes(manifestPath), StandardCharsets.UTF_8), manifestPath.toString());
        Path replay = Paths.get(args[1]);
        short[] pcm = FrontendCli.readPcm(Paths.get(args[2]));

        final int[] step = {0};
        final Map<String, Double> stateMaxDiff = new LinkedHashMap<>();
        final List<String> problems = new ArrayList<>();
        final double[] featureMaxDiff = {0.0};
        final double[] endMaxDiff = {0.0};
        StreamingSession session = new StreamingSession(manifest, feeds -> {
            Path dir = replay.resolve("step_" + step[0]);
            for (Map.Entry<String, Tensor> feed : feeds.entrySet()) {
                Path file = dir.resolve("in").resolve(feed.getKey() + ".f32");
                if (!Files.exists(file)) {
                    problems.add("step " + step[0] + ": fed " + feed.getKey() + ", which Python did not feed");
                    continue;
                }
                float[] expected = readFloats(file);
                double diff = maxAbsDiff(feed.getValue().floats, expected);
                if (feed.getKey().equals("features")) {
                    featureMaxDiff[0] = Math.max(featureMaxDiff[0], diff);
                } else if (feed.getKey().equals(manifest.endInput())) {
                    endMaxDiff[0] = Math.max(endMaxDiff[0], diff);
                } else {
                    stateMaxDiff.merge(feed.getKey(), diff, Math::max);
                }
            }
            Map<String, Tensor> outputs = new LinkedHashMap<>();
            for (BundleManifest.TensorEntry out : manifest.outputs) {
                outputs.put(out.name, Tensor.ofFloats(out.concreteShape(1),
                        readFloats(dir.resolve("out").resolve(out.name + ".f32"))));
            }
            for (BundleManifest.StateEntry s : manifest.states) {
                outputs.put(s.output, Tensor.ofFloats(s.shapeForBatch(1),
                        readFloats(dir.resolve("out").resolve(s.output + ".f32"))));
            }
            step[0]++;
            return outputs;
        });

        int steps = 0;
        while (Files.isDirectory(replay.resolve("step_" + steps))) {
            steps++;
        }
        StreamingFbank fbank = new StreamingFbank(manifest.fbank());
        KeywordDecider decider = new KeywordDecider(manifest.labels(), manifest.lookaheadFrames(),
                manifest.clipFrames(), args.length == 5 ? Double.parseDouble(args[3]) : 0.98,
                args.length == 5 ? Integer.parseInt(args[4]) : 30);
        BundleManifest.TensorEntry featureEntry = manifest.streamInputs().get(0);
        int[] featureShape = featureEntry.concreteShape(1);
        // The app's loop (MainActivity.kt) over the clip's own frames, then, as edgesdk's Python
        // spotter finishes a clip, padded frames until the window is full and the stream ends.
        // Only the first decision is made; the clip's frames go on through the stream after it
        // (no reset) as long as the recording does.
        List<float[]> frames = new ArrayList<>();
        for (int start = 0; start < pcm.length; start += 160) {
            frames.addAll(fbank.push(java.util.Arrays.copyOfRange(pcm, start, Math.min(pcm.length, start + 160))));
        }
        int audioFrames = frames.size();
        float[] pad = new float[Tensor.size(featureShape)];
        java.util.Arrays.fill(pad, (float) manifest.padValue());
        KeywordDecider.Decision decision = null;
        float[] lastMean = null;
        int pushed = 0;
        while (step[0] < steps && (decision == null || pushed < audioFrames)) {
            Map<String, Tensor> inputs = new LinkedHashMap<>();
            inputs.put(featureEntry.name, Tensor.ofFloats(featureShape, pushed < audioFrames ? frames.get(pushed) : pad));
            pushed++;
            lastMean = session.push(inputs).get("mean_logits").floats;
            if (decision != null) {
                continue;
            }
            decision = decider.update(lastMean);
            if (decision == null && decider.windowFull()) {
                Tensor owed = session.end().get("mean_logits");
                float[] last = null;
                if (owed != null) {
                    last = java.util.Arrays.copyOfRange(owed.floats, owed.floats.length - lastMean.length, owed.floats.length);
                    lastMean = last;
                }
                decision = decider.decideWindow(last);
            }
        }
        StringBuilder json = new StringBuilder("{");
        json.append("\"steps\": ").append(step[0]);
        json.append(", \"audio_frames\": ").append(audioFrames);
        json.append(", \"feed_order\": ").append(quoted(session.feedOrder()));
        List<String> pairs = new ArrayList<>();
        for (BundleManifest.StateEntry s : manifest.states) {
            pairs.add(s.output + "->" + s.input);
        }
        json.append(", \"state_pairs\": ").append(quoted(pairs));
        json.append(", \"feature_max_abs_diff\": ").append(featureMaxDiff[0]);
        json.append(", \"end_input_max_abs_diff\": ").append(endMaxDiff[0]);
        json.append(", \"state_max_abs_diff\": {");
        int i = 0;
        for (Map.Entry<String, Double> e : stateMaxDiff.entrySet()) {
            json.append(i++ == 0 ? "" : ", ").append('"').append(e.getKey()).append("\": ").append(e.getValue());
        }
        json.append("}, \"problems\": ").append(quoted(problems));
        List<String> names = new ArrayList<>();
        for (String format : new String[] {"onnx", "tflite"}) {
            try {
                for (String name : session.feedOrder()) {
                    names.add(format + ":" + name + "=" + manifest.backendName(format, "inputs", name));
                }
            } catch (IllegalArgumentException absent) {
                // the bundle has no artifact of this format
            }
        }
        json.append(", \"backend_input_names\": ").append(quoted(names));
        json.append(", \"last_mean_logits\": [");
        for (int k = 0; lastMean != null && k < lastMean.length; k++) {
            json.append(k == 0 ? "" : ", ").append(lastMean[k]);
        }
        json.append("]");
        if (decision != null) {
            json.append(", \"decision\": {\"label\": \"").append(decision.label)
                .append("\", \"window_frame\": ").append(decision.windowFrame)
                .append(", \"early_exit\": ").append(decision.earlyExit)
                .append(", \"probability\": ").append(decision.probability).append('}');
        }
        json.append('}');
        System.out.println(json);
    }

    private static String quoted(List<String> items) {
        StringBuilder out = new StringBuilder("[");
        for (int i = 0; i < items.size(); i++) {
            out.append(i == 0 ? "" : ", ").append('"').append(items.get(i).replace("\"", "'")).append('"');
        }
        return out.append(']').toString();
    }

    private static double maxAbsDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            return Double.POSITIVE_INFINITY;
        }
        double worst = 0.0;
        for (int i = 0; i < a.length; i++) {
            worst = Math.max(worst, Math.abs((double) a[i] - b[i]));
        }
        return worst;
    }

    static float[] readFloats(Path path) {
        try {
            ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(path)).order(ByteOrder.LITTLE_ENDIAN);
            float[] values = new float[bytes.remaining() / 4];
            bytes.asFloatBuffer().get(values);
            return values;
        } catch (IOException error) {
            throw new IllegalStateException("cannot read " + path + ": " + error.getMessage());
        }
    }
}
