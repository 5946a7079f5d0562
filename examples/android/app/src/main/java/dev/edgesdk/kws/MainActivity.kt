package dev.edgesdk.kws

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Typeface
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaRecorder
import android.os.Bundle
import android.view.Gravity
import android.widget.LinearLayout
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.core.app.ActivityCompat
import androidx.core.content.ContextCompat
import dev.edgesdk.kws.core.BundleManifest
import dev.edgesdk.kws.core.KeywordDecider
import dev.edgesdk.kws.core.StreamingFbank
import dev.edgesdk.kws.core.StreamingSession
import dev.edgesdk.kws.core.Tensor
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/**
 * Keyword spotting from the microphone with an edgesdk streaming bundle (assets/kws/).
 *
 * Android-specific parts only: permission, AudioRecord, the LiteRT interpreter and the screen.
 * The front-end (KaldiFbank, StreamingFbank), the state feeding (StreamingSession) and the
 * decision rule (KeywordDecider) are plain Java in dev.edgesdk.kws.core, checked on a desktop
 * JDK against edgesdk's Python runtime by tests/examples/test_android_java.py.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var keywordView: TextView
    private lateinit var statusView: TextView
    @Volatile private var listening = false
    private var worker: Thread? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        keywordView = TextView(this).apply {
            textSize = 48f
            typeface = Typeface.DEFAULT_BOLD
            gravity = Gravity.CENTER
            text = "…"
        }
        statusView = TextView(this).apply {
            textSize = 14f
            gravity = Gravity.CENTER
        }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            gravity = Gravity.CENTER
            addView(keywordView)
            addView(statusView)
        })
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.RECORD_AUDIO) == PackageManager.PERMISSION_GRANTED) {
            start()
        } else {
            ActivityCompat.requestPermissions(this, arrayOf(Manifest.permission.RECORD_AUDIO), REQUEST_AUDIO)
        }
    }

    override fun onRequestPermissionsResult(requestCode: Int, permissions: Array<out String>, grantResults: IntArray) {
        super.onRequestPermissionsResult(requestCode, permissions, grantResults)
        if (requestCode == REQUEST_AUDIO && grantResults.firstOrNull() == PackageManager.PERMISSION_GRANTED) {
            start()
        } else {
            statusView.text = "Microphone permission is needed to spot keywords."
        }
    }

    override fun onDestroy() {
        listening = false
        worker?.join(1000)
        super.onDestroy()
    }

    private fun start() {
        val manifest = BundleManifest.parse(assets.open("$BUNDLE/edgesdk.json").bufferedReader().readText(), "$BUNDLE/edgesdk.json")
        val interpreter = Interpreter(mapModel("$BUNDLE/model.tflite"), Interpreter.Options().setNumThreads(1))
        val session = StreamingSession(manifest, LiteRtRunner(interpreter, manifest))
        val fbank = StreamingFbank(manifest.fbank())
        val decider = KeywordDecider(manifest.labels(), manifest.lookaheadFrames(), manifest.clipFrames(), EARLY_EXIT_PROBABILITY, EARLY_EXIT_FRAMES)
        val feature = manifest.streamInputs()[0]
        val featureShape = feature.concreteShape(1)
        listening = true
        var skip = 0
        worker = Thread {
            listen(fbank) { frame ->
                if (skip > 0) {
                    skip-- // the rest of a word just decided early (as examples/kws/spotter.py)
                    return@listen
                }
                val outputs = session.push(mapOf(feature.name to Tensor.ofFloats(featureShape, frame)))
                val meanLogits = outputs.getValue("mean_logits").floats
                var decision = decider.update(meanLogits)
                if (decision == null && decider.windowFull()) {
                    // The window's last frame is in: the answers owed for its look-ahead frames,
                    // as the full-clip model computes them (no later audio is consumed).
                    val owed = session.end()["mean_logits"]?.floats
                    decision = decider.decideWindow(owed?.copyOfRange(owed.size - meanLogits.size, owed.size))
                }
                if (decision != null) {
                    session.reset()
                    if (decision.earlyExit) skip = REFRACTORY_FRAMES
                    if (decision.isKeyword) {
                        runOnUiThread {
                            keywordView.text = decision.label
                            statusView.text = "p = %.2f, decided after %d frames%s".format(
                                decision.probability, decision.windowFrame, if (decision.earlyExit) " (early exit)" else "")
                        }
                    }
                }
            }
        }.apply { start() }
        statusView.text = "Listening: ${manifest.labels().filter { !it.startsWith("_") }.joinToString(", ")}"
    }

    /** Reads 16 kHz mono PCM in 10 ms hops and hands every completed fbank frame to [onFrame]. */
    private fun listen(fbank: StreamingFbank, onFrame: (FloatArray) -> Unit) {
        val hop = SAMPLE_RATE_HZ / 100
        val minimum = AudioRecord.getMinBufferSize(SAMPLE_RATE_HZ, AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_16BIT)
        @Suppress("MissingPermission") // checked in onCreate before start()
        val recorder = AudioRecord(MediaRecorder.AudioSource.VOICE_RECOGNITION, SAMPLE_RATE_HZ,
            AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_16BIT, maxOf(minimum, 4 * hop * 2))
        val samples = ShortArray(hop)
        recorder.startRecording()
        try {
            while (listening) {
                val read = recorder.read(samples, 0, hop)
                if (read <= 0) continue
                for (frame in fbank.push(if (read == hop) samples else samples.copyOf(read))) {
                    onFrame(frame)
                }
            }
        } finally {
            recorder.stop()
            recorder.release()
        }
    }

    private fun mapModel(path: String): MappedByteBuffer {
        val descriptor = assets.openFd(path) // needs noCompress "tflite" (app/build.gradle.kts)
        FileInputStream(descriptor.fileDescriptor).channel.use { channel ->
            return channel.map(FileChannel.MapMode.READ_ONLY, descriptor.startOffset, descriptor.declaredLength)
        }
    }

    companion object {
        private const val BUNDLE = "kws"
        private const val SAMPLE_RATE_HZ = 16000
        private const val REQUEST_AUDIO = 1
        private const val REFRACTORY_FRAMES = 50
        // The rule examples/kws/tune_early_exit.py chose on the validation split (spotter.py).
        private const val EARLY_EXIT_PROBABILITY = 0.98
        private const val EARLY_EXIT_FRAMES = 30
    }
}

/**
 * One streaming step on the LiteRT interpreter through its signature runner. Logical names (the
 * manifest's) are mapped to the TFLite file's own names (args_0 ..., output_0 ...) by the
 * manifest's artifacts entry; output buffers are allocated once and reused.
 */
class LiteRtRunner(private val interpreter: Interpreter, private val manifest: BundleManifest) : StreamingSession.StepRunner {
    private val signature: String = manifest.artifact("tflite")["signature"] as String
    private val outputShapes: Map<String, IntArray> =
        manifest.streamOutputs().associate { it.name to it.concreteShape(1) } +
            manifest.states.associate { it.output to it.shapeForBatch(1) }
    private val outputBuffers: Map<String, ByteBuffer> = outputShapes.mapValues { (_, shape) ->
        ByteBuffer.allocateDirect(4 * Tensor.size(shape)).order(ByteOrder.nativeOrder())
    }

    override fun run(feeds: Map<String, Tensor>): Map<String, Tensor> {
        val inputs = HashMap<String, Any>()
        for ((name, tensor) in feeds) {
            val buffer = ByteBuffer.allocateDirect(4 * tensor.size()).order(ByteOrder.nativeOrder())
            buffer.asFloatBuffer().put(tensor.floats)
            inputs[manifest.backendName("tflite", "inputs", name)] = buffer
        }
        val outputs = HashMap<String, Any>()
        for ((name, buffer) in outputBuffers) {
            buffer.rewind()
            outputs[manifest.backendName("tflite", "outputs", name)] = buffer
        }
        interpreter.runSignature(inputs, outputs, signature)
        return outputBuffers.mapValues { (name, buffer) ->
            buffer.rewind()
            val values = FloatArray(Tensor.size(outputShapes.getValue(name)))
            buffer.asFloatBuffer().get(values)
            Tensor.ofFloats(outputShapes.getValue(name), values)
        }
    }
}
