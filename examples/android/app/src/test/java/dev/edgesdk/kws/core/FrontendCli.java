package dev.edgesdk.kws.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.List;

/**
 * Desktop driver the Python tests call to run the Android app's plain-Java front-end.
 *
 * <pre>
 *   FrontendCli clip   IN.pcm OUT.f32 raw|normalised   whole clip, clip mean removed (training path)
 *   FrontendCli stream IN.pcm OUT.f32 CHUNK            live path: CHUNK samples at a time
 * </pre>
 * IN.pcm is little-endian int16 at 16 kHz; OUT.f32 receives little-endian float32 [frames][128].
 */
public final class FrontendCli {
    public static void main(String[] args) throws IOException {
        if (args.length != 4) {
            System.err.println("usage: FrontendCli clip IN OUT raw|normalised | stream IN OUT CHUNK");
            System.exit(2);
        }
        short[] pcm = readPcm(Paths.get(args[1]));
        KaldiFbank fbank = KaldiFbank.lmuformer();
        float[][] frames;
        if (args[0].equals("clip")) {
            frames = fbank.clip(pcm, args[3].equals("normalised"));
        } else if (args[0].equals("stream")) {
            int chunk = Integer.parseInt(args[3]);
            StreamingFbank stream = new StreamingFbank(fbank);
            java.util.ArrayList<float[]> rows = new java.util.ArrayList<>();
            for (int start = 0; start < pcm.length; start += chunk) {
                List<float[]> out = stream.push(Arrays.copyOfRange(pcm, start, Math.min(pcm.length, start + chunk)));
                rows.addAll(out);
            }
            frames = rows.toArray(new float[0][]);
        } else {
            throw new IllegalArgumentException("unknown mode " + args[0]);
        }
        ByteBuffer out = ByteBuffer.allocate(4 * frames.length * fbank.numMelBins).order(ByteOrder.LITTLE_ENDIAN);
        for (float[] row : frames) {
            for (float v : row) {
                out.putFloat(v);
            }
        }
        Files.write(Paths.get(args[2]), out.array());
    }

    static short[] readPcm(Path path) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(path)).order(ByteOrder.LITTLE_ENDIAN);
        short[] pcm = new short[bytes.remaining() / 2];
        bytes.asShortBuffer().get(pcm);
        return pcm;
    }
}
