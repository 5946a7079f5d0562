package dev.edgesdk.kws.core;

/**
 * Kaldi-compatible log-mel filterbank, the front-end LMUFormer was trained on, in plain Java.
 *
 * <p>It computes what {@code torchaudio.compliance.kaldi.fbank} computes with the settings of the
 * bundle's {@code frontend} section (LMUFormer: 16 kHz, 25 ms frames every 10 ms, Hann window,
 * pre-emphasis 0.97, per-frame DC removal, 512-point power spectrum, 128 mel bins from 20 Hz to
 * Nyquist, natural log floored at float32 epsilon, no dither, snip_edges), then applies the
 * bundle's normalisation {@code (x - mean) / std}.
 *
 * <p>Arithmetic is in double precision; features are returned as float. No Android imports, so
 * the tests compile and check this class on a desktop JDK.
 */
public final class KaldiFbank {
    /** float32 machine epsilon: Kaldi floors the mel energies at this before the log. */
    public static final double ENERGY_FLOOR = 1.1920928955078125e-07;

    public final int sampleRateHz;
    public final int frameLengthSamples;
    public final int frameShiftSamples;
    public final int numMelBins;
    public final double preemphasis;
    public final double normMean;
    public final double normStd;

    private final int fftSize;
    private final double[] window;
    private final double[][] melWeights;   // [bin][fft bin 0 .. fftSize/2 - 1]
    private final int[] melFirst;          // first non-zero fft bin of each mel bin
    private final double[] cos;
    private final double[] sin;

    /**
     * @param sampleRateHz sampling rate of the PCM, e.g. 16000
     * @param frameLengthSamples window length in samples (400 = 25 ms at 16 kHz)
     * @param frameShiftSamples hop in samples (160 = 10 ms)
     * @param numMelBins number of mel filters (128)
     * @param lowFreqHz lower edge of the first filter (20)
     * @param highFreqHz upper edge of the last filter; 0 or negative means relative to Nyquist
     * @param preemphasis pre-emphasis coefficient (0.97)
     * @param normMean subtracted from the log-mel after the log (LMUFormer: -6.845978)
     * @param normStd divides the result (LMUFormer: 2 * 5.5654526, i.e. twice the manifest's
     *     normalize_std)
     */
    public KaldiFbank(int sampleRateHz, int frameLengthSamples, int frameShiftSamples, int numMelBins,
                      double lowFreqHz, double highFreqHz, double preemphasis,
                      double normMean, double normStd) {
        if (sampleRateHz <= 0 || numMelBins <= 0 || normStd == 0.0) {
            throw new IllegalArgumentException("sample rate and mel bins must be positive, std non-zero");
        }
        if (frameLengthSamples < 2 || frameShiftSamples < 1) {
            throw new IllegalArgumentException("frame length must be at least 2 samples and the hop at least 1");
        }
        this.sampleRateHz = sampleRateHz;
        this.frameLengthSamples = frameLengthSamples;
        this.frameShiftSamples = frameShiftSamples;
        this.numMelBins = numMelBins;
        this.preemphasis = preemphasis;
        this.normMean = normMean;
        this.normStd = normStd;
        int size = 1;
        while (size < frameLengthSamples) {
            size <<= 1;
        }
        this.fftSize = size;
        this.window = new double[frameLengthSamples];
        for (int n = 0; n < frameLengthSamples; n++) {
            // Kaldi's "hanning" is the symmetric Hann window.
            window[n] = 0.5 - 0.5 * Math.cos(2.0 * Math.PI * n / (frameLengthSamples - 1));
        }
        this.cos = new double[fftSize / 2];
        this.sin = new double[fftSize / 2];
        for (int k = 0; k < fftSize / 2; k++) {
            cos[k] = Math.cos(-2.0 * Math.PI * k / fftSize);
            sin[k] = Math.sin(-2.0 * Math.PI * k / fftSize);
        }
        double nyquist = 0.5 * sampleRateHz;
        double high = highFreqHz > 0.0 ? highFreqHz : nyquist + highFreqHz;
        this.melWeights = new double[numMelBins][];
        this.melFirst = new int[numMelBins];
        buildMelBanks(lowFreqHz, high);
    }

    /** LMUFormer's front-end for Speech Commands; {@link BundleManifest#fbank} reads it from a bundle. */
    public static KaldiFbank lmuformer() {
        return new KaldiFbank(16000, 400, 160, 128, 20.0, 0.0, 0.97, -6.845978, 5.5654526 * 2.0);
    }

    private static double mel(double hz) {
        return 1127.0 * Math.log(1.0 + hz / 700.0);
    }

    private void buildMelBanks(double lowHz, double highHz) {
        int numFftBins = fftSize / 2;   // the Nyquist bin gets weight 0, as in Kaldi
        double binWidthHz = (double) sampleRateHz / fftSize;
        double melLow = mel(lowHz);
        double melHigh = mel(highHz);
        double delta = (melHigh - melLow) / (numMelBins + 1);
        for (int b = 0; b < numMelBins; b++) {
            double left = melLow + b * delta;
            double center = melLow + (b + 1) * delta;
            double right = melLow + (b + 2) * delta;
            double[] row = new double[numFftBins];
            int first = -1;
            for (int i = 0; i < numFftBins; i++) {
                double m = mel(binWidthHz * i);
                double up = (m - left) / (center - left);
                double down = (right - m) / (right - center);
                double weight = Math.max(0.0, Math.min(up, down));
                row[i] = weight;
                if (weight > 0.0 && first < 0) {
                    first = i;
                }
            }
            melWeights[b] = row;
            melFirst[b] = Math.max(first, 0);
        }
    }

    /** Number of frames Kaldi's snip_edges gives for a clip of this many samples. */
    public int numFrames(int samples) {
        if (samples < frameLengthSamples) {
            return 0;
        }
        return 1 + (samples - frameLengthSamples) / frameShiftSamples;
    }

    /**
     * Log-mel energies (before normalisation) of one frame.
     *
     * @param samples waveform scaled to [-1, 1)
     * @param offset index of the frame's first sample
     * @param out receives numMelBins values
     */
    public void logMel(double[] samples, int offset, float[] out) {
        int n = frameLengthSamples;
        double[] re = new double[fftSize];
        double[] im = new double[fftSize];
        double mean = 0.0;
        for (int i = 0; i < n; i++) {
            mean += samples[offset + i];
        }
        mean /= n;
        double previous = samples[offset] - mean;
        for (int i = 0; i < n; i++) {
            double x = samples[offset + i] - mean;
            // Kaldi pre-emphasises the first sample against itself.
            double emphasised = x - preemphasis * (i == 0 ? x : previous);
            previous = x;
            re[i] = emphasised * window[i];
        }
        fft(re, im);
        int numFftBins = fftSize / 2;
        double[] power = new double[numFftBins];
        for (int i = 0; i < numFftBins; i++) {
            power[i] = re[i] * re[i] + im[i] * im[i];
        }
        for (int b = 0; b < numMelBins; b++) {
            double[] row = melWeights[b];
            double energy = 0.0;
            for (int i = melFirst[b]; i < numFftBins; i++) {
                energy += row[i] * power[i];
            }
            out[b] = (float) Math.log(Math.max(energy, ENERGY_FLOOR));
        }
    }

    /** Applies the bundle's normalisation in place. */
    public void normalise(float[] logMel) {
        for (int b = 0; b < logMel.length; b++) {
            logMel[b] = (float) ((logMel[b] - normMean) / normStd);
        }
    }

    /**
     * Log-mel of a whole clip, as the training pipeline computed it: int16 / 32768, the clip's
     * mean removed, then one row per frame.
     *
     * @param pcm 16-bit samples
     * @param normalised whether to apply the normalisation
     * @return [frames][numMelBins]
     */
    public float[][] clip(short[] pcm, boolean normalised) {
        double[] samples = new double[pcm.length];
        double mean = 0.0;
        for (int i = 0; i < pcm.length; i++) {
            samples[i] = pcm[i] / 32768.0;
            mean += samples[i];
        }
        mean = pcm.length > 0 ? mean / pcm.length : 0.0;
        for (int i = 0; i < pcm.length; i++) {
            samples[i] -= mean;
        }
        int frames = numFrames(pcm.length);
        float[][] result = new float[frames][numMelBins];
        for (int f = 0; f < frames; f++) {
            logMel(samples, f * frameShiftSamples, result[f]);
            if (normalised) {
                normalise(result[f]);
            }
        }
        return result;
    }

    /** In-place iterative radix-2 complex FFT (size fftSize). */
    private void fft(double[] re, double[] im) {
        int n = fftSize;
        for (int i = 1, j = 0; i < n; i++) {
            int bit = n >> 1;
            for (; (j & bit) != 0; bit >>= 1) {
                j ^= bit;
            }
            j ^= bit;
            if (i < j) {
                double t = re[i]; re[i] = re[j]; re[j] = t;
                t = im[i]; im[i] = im[j]; im[j] = t;
            }
        }
        for (int length = 2; length <= n; length <<= 1) {
            int half = length >> 1;
            int step = n / length;
            for (int start = 0; start < n; start += length) {
                for (int k = 0; k < half; k++) {
                    double wr = cos[k * step];
                    double wi = sin[k * step];
                    int a = start + k;
                    int b = a + half;
                    double xr = re[b] * wr - im[b] * wi;
                    double xi = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - xr;
                    im[b] = im[a] - xi;
                    re[a] += xr;
                    im[a] += xi;
                }
            }
        }
    }
}
