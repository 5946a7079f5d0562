package dev.edgesdk.kws.core;

import java.util.Arrays;

/** A dense row-major tensor: float32 data in {@code floats}, or int32/int64 data in {@code longs}. */
public final class Tensor {
    public final String dtype;
    public final int[] shape;
    public final float[] floats;
    public final long[] longs;

    private Tensor(String dtype, int[] shape, float[] floats, long[] longs) {
        this.dtype = dtype;
        this.shape = shape.clone();
        this.floats = floats;
        this.longs = longs;
    }

    public static Tensor ofFloats(int[] shape, float[] data) {
        if (data.length != size(shape)) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs "
                    + size(shape) + " values, got " + data.length);
        }
        return new Tensor("float32", shape, data, null);
    }

    public static Tensor ofLongs(String dtype, int[] shape, long[] data) {
        if (!dtype.equals("int32") && !dtype.equals("int64")) {
            throw new IllegalArgumentException("integer tensors are int32 or int64, not " + dtype);
        }
        if (data.length != size(shape)) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs "
                    + size(shape) + " values, got " + data.length);
        }
        return new Tensor(dtype, shape, null, data);
    }

    /** A tensor of the given dtype filled with {@code value} (a manifest state's init). */
    public static Tensor full(String dtype, int[] shape, double value) {
        int n = size(shape);
        if (dtype.equals("float32")) {
            float[] data = new float[n];
            Arrays.fill(data, (float) value);
            return ofFloats(shape, data);
        }
        long[] data = new long[n];
        Arrays.fill(data, (long) value);
        return ofLongs(dtype, shape, data);
    }

    public static int size(int[] shape) {
        int n = 1;
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            }
            n *= d;
        }
        return n;
    }

    public int size() {
        return size(shape);
    }

    public boolean sameLayout(Tensor other) {
        return dtype.equals(other.dtype) && Arrays.equals(shape, other.shape);
    }

    @Override
    public String toString() {
        return dtype + Arrays.toString(shape);
    }
}
