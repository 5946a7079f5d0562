package dev.edgesdk.kws.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Turns microphone PCM, arriving in chunks of any size, into normalised fbank frames.
 *
 * <p>Frame k covers samples [k * shift, k * shift + length), exactly as Kaldi's snip_edges
 * framing of the whole recording would. The only difference from the offline
 * {@link KaldiFbank#clip} is that a live stream cannot subtract the mean of the whole clip
 * first; Kaldi removes each frame's own DC offset anyway, so the features differ only by
 * rounding (the tests measure it).
 */
public final class StreamingFbank {
    private final KaldiFbank fbank;
    private final double[] buffer;   // the most recent frameLength samples
    private int filled;              // samples held in buffer
    private long consumed;           // samples pushed so far
    private long nextFrameStart;     // absolute index of the next frame's first sample

    public StreamingFbank(KaldiFbank fbank) {
        this.fbank = fbank;
        this.buffer = new double[fbank.frameLengthSamples];
    }

    /** Forgets all audio (a new utterance starts). */
    public void reset() {
        filled = 0;
        consumed = 0;
        nextFrameStart = 0;
    }

    /**
     * Appends 16-bit PCM and returns every frame completed by it, normalised.
     *
     * @param pcm samples at the front-end's sample rate
     * @return zero or more frames of numMelBins values, oldest first
     */
    public List<float[]> push(short[] pcm) {
        List<float[]> frames = new ArrayList<>();
        int length = fbank.frameLengthSamples;
        for (short value : pcm) {
            if (filled == length) {
                System.arraycopy(buffer, 1, buffer, 0, length - 1);
                filled--;
            }
            buffer[filled++] = value / 32768.0;
            consumed++;
            // The newest sample completes the frame starting at consumed - length.
            if (filled == length && consumed - length == nextFrameStart) {
                float[] frame = new float[fbank.numMelBins];
                fbank.logMel(buffer, 0, frame);
                fbank.normalise(frame);
                frames.add(frame);
                nextFrameStart += fbank.frameShiftSamples;
            }
        }
        return frames;
    }
}
