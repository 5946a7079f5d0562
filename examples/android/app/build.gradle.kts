plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgesdk.kws"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.edgesdk.kws"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    // The bundle's model.tflite is memory-mapped from the APK: keep it uncompressed.
    androidResources {
        noCompress += "tflite"
    }
}

dependencies {
    // LiteRT (formerly TensorFlow Lite), Interpreter API with signature runners, CPU/XNNPACK.
    implementation("com.google.ai.edge.litert:litert:1.4.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    testImplementation("junit:junit:4.13.2")
}
