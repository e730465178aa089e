// The photo-to-decision peer of `facegate bench photo`: what dlib's
// face_recognition package does per photo, in C++ so no Python overhead
// is counted against it. Per photo: decode, HOG face detection on the photo
// upsampled once (face_recognition's default), the 5-point landmarks, the
// 150x150 chip, one pass of the ResNet, and the distance to an enrolled
// embedding (the first photo's) against face_recognition's 0.6 tolerance.
//
//   dlib_photo MODELS_DIR < paths.txt > times.tsv
//
// stdout: `path<TAB>milliseconds<TAB>faces found<TAB>accept|reject|none`.
// One thread (run it with OPENBLAS_NUM_THREADS=1).
#include <dlib/dnn.h>
#include <dlib/image_io.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

#include <chrono>
#include <iostream>
#include <string>

#include "../scripts/teacher/dlib_face_net.h"

using namespace dlib;

int main(int argc, char** argv) {
    static facegate_dlib::Models m;
    if (!facegate_dlib::load_models(argc, argv, "dlib_photo MODELS_DIR < paths.txt > times.tsv", m))
        return 2;
    auto& [detector, landmarks, net] = m;
    matrix<float, 0, 1> enrolled;
    bool have_enrolled = false;

    std::string path;
    while (std::getline(std::cin, path)) {
        if (path.empty()) continue;
        const auto start = std::chrono::steady_clock::now();
        matrix<rgb_pixel> img;
        if (!facegate_dlib::read_image(path, img)) continue;
        pyramid_up(img);
        const std::vector<rectangle> faces = detector(img);
        std::string decision = "none";
        if (!faces.empty()) {
            const full_object_detection shape = landmarks(img, facegate_dlib::largest(faces));
            matrix<rgb_pixel> chip;
            extract_image_chip(img, get_face_chip_details(shape, 150, 0.25), chip);
            const matrix<float, 0, 1> e = net(chip);
            if (!have_enrolled) {
                enrolled = e;
                have_enrolled = true;
            }
            decision = length(e - enrolled) < 0.6 ? "accept" : "reject";
        }
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        std::cout << path << "\t" << ms << "\t" << faces.size() << "\t" << decision << "\n";
    }
    return 0;
}
