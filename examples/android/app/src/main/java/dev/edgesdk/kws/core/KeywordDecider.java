package dev.edgesdk.kws.core;

import java.util.List;

/**
 * Turns the stream's running-mean logits, one frame at a time, into keyword decisions.
 *
 * <p>The rule of {@code edgesdk demo} and the Jetson app (examples/kws/spotter.py): in a window
 * of the model's training length, a keyword whose running probability (sigmoid of its
 * running-mean logit; the model is trained with per-class sigmoid) stays at or above
 * {@code threshold} for {@code holdFrames} consecutive frames decides at once (early exit);
 * otherwise the window's last frame decides: once {@link #windowFull()}, the caller ends the
 * stream ({@link StreamingSession#end()}, the answers owed for the look-ahead frames, computed as
 * the full-clip model pads the end of a window) and passes its last frame to
 * {@link #decideWindow}. Filler classes (names starting with '_': silence,
 * unknown) never exit early: every utterance starts with silence.
 * The first {@code lookahead} frames of a window decide nothing: the stream answers that many
 * frames behind its input. After a decision the caller resets the stream and this decider.
 */
public final class KeywordDecider {
    /** One decision. */
    public static final class Decision {
        public final int classIndex;
        public final String label;
        public final double probability;
        public final int windowFrame;    // frames pushed in this window when it was decided
        public final boolean earlyExit;

        Decision(int classIndex, String label, double probability, int windowFrame, boolean earlyExit) {
            this.classIndex = classIndex;
            this.label = label;
            this.probability = probability;
            this.windowFrame = windowFrame;
            this.earlyExit = earlyExit;
        }

        /** True for a keyword, false for the filler classes (names starting with '_'). */
        public boolean isKeyword() {
            return !label.startsWith("_");
        }
    }

    private final List<String> labels;
    private final int lookahead;
    private final int windowFrames;
    private final double threshold;
    private final int holdFrames;
    private int frames;
    private int streak;
    private int lastTop = -1;
    private float[] lastMeanLogits;

    public KeywordDecider(List<String> labels, int lookahead, int windowFrames, double threshold, int holdFrames) {
        if (threshold <= 0.0 || threshold > 1.0 || holdFrames < 1 || lookahead < 0 || windowFrames <= lookahead) {
            throw new IllegalArgumentException("threshold in (0, 1], holdFrames >= 1, 0 <= lookahead < windowFrames");
        }
        this.labels = labels;
        this.lookahead = lookahead;
        this.windowFrames = windowFrames;
        this.threshold = threshold;
        this.holdFrames = holdFrames;
    }

    private String labelOf(int index) {
        return index < labels.size() ? labels.get(index) : Integer.toString(index);
    }

    public void reset() {
        frames = 0;
        streak = 0;
        lastTop = -1;
        lastMeanLogits = null;
    }

    /**
     * Feeds the running-mean logits the stream returned for one more frame.
     *
     * @return an early decision, or null: then check {@link #windowFull()}
     */
    public Decision update(float[] meanLogits) {
        frames++;
        if (frames <= lookahead) {
            return null;
        }
        lastMeanLogits = meanLogits;
        int top = argmax(meanLogits);
        if (probability(meanLogits[top]) >= threshold && !labelOf(top).startsWith("_")) {
            streak = top == lastTop ? streak + 1 : 1;
        } else {
            streak = 0;
        }
        lastTop = top;
        return streak >= holdFrames ? decide(meanLogits, true) : null;
    }

    /** True once the window's last frame is in, with no early decision: call {@link #decideWindow}. */
    public boolean windowFull() {
        return frames >= windowFrames;
    }

    /**
     * The window's decision.
     *
     * @param owedLastFrame the last frame of the mean logits {@link StreamingSession#end()}
     *     returned, or null where it returned nothing (a stream with no look-ahead): then the
     *     last frame given to {@link #update} decides
     */
    public Decision decideWindow(float[] owedLastFrame) {
        float[] meanLogits = owedLastFrame != null ? owedLastFrame : lastMeanLogits;
        if (meanLogits == null) {
            throw new IllegalStateException("no answer in this window to decide on");
        }
        return decide(meanLogits, false);
    }

    private Decision decide(float[] meanLogits, boolean early) {
        int top = argmax(meanLogits);
        Decision decision = new Decision(top, labelOf(top), probability(meanLogits[top]), frames, early);
        reset();
        return decision;
    }

    private static int argmax(float[] values) {
        int top = 0;
        for (int k = 1; k < values.length; k++) {
            if (values[k] > values[top]) {
                top = k;
            }
        }
        return top;
    }

    private static double probability(float logit) {
        return 1.0 / (1.0 + Math.exp(-logit));
    }
}
