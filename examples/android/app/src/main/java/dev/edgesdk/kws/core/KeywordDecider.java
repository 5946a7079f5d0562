package dev.edgesdk.kws.core;

import java.util.List;

/**
 * Turns the stream's running-mean logits, one frame at a time, into keyword decisions.
 *
 * <p>The rule of {@code edgesdk demo} and the Jetson app (examples/kws/spotter.py): in a window
 * of the model's training length, a keyword whose running probability (sigmoid of its
 * running-mean logit; the model is trained with per-class sigmoid) stays at or above
 * {@code threshold} for {@code holdFrames} consecutive frames decides at once (early exit);
 * otherwise the window's last frame decides. Filler classes (names starting with '_': silence,
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

    public KeywordDecider(List<String> labels, int lookahead, int windowFrames, double threshold, int holdFrames) {
        if (threshold <= 0.0 || threshold > 1.0 || holdFrames < 1 || windowFrames < 1 || lookahead < 0) {
            throw new IllegalArgumentException("threshold in (0, 1], holdFrames and windowFrames >= 1, lookahead >= 0");
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
    }

    /**
     * Feeds the running-mean logits the stream returned for one more frame.
     *
     * @return the window's decision, or null while it is still open
     */
    public Decision update(float[] meanLogits) {
        frames++;
        if (frames <= lookahead) {
            return null;
        }
        int top = 0;
        for (int k = 1; k < meanLogits.length; k++) {
            if (meanLogits[k] > meanLogits[top]) {
                top = k;
            }
        }
        double probability = 1.0 / (1.0 + Math.exp(-meanLogits[top]));
        if (probability >= threshold && !labelOf(top).startsWith("_")) {
            streak = top == lastTop ? streak + 1 : 1;
        } else {
            streak = 0;
        }
        lastTop = top;
        boolean early = streak >= holdFrames;
        if (early || frames >= windowFrames + lookahead) {
            Decision decision = new Decision(top, labelOf(top), probability, frames, early);
            reset();
            return decision;
        }
        return null;
    }
}
