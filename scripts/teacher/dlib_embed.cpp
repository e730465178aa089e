// Teacher embeddings for distillation: dlib's public-domain face recognition
// ResNet (dlib_face_recognition_resnet_model_v1.dat, 128-d) run on facegate's
// aligned 112x112 faces.
//
//   dlib_embed MODELS_DIR < paths.txt > embeddings.tsv
//
// stdin: one image path per line. stdout: `path<TAB>128 floats<TAB>128 floats`,
// the embedding of the face and of its mirror image, or `path<TAB>error<TAB>why`.
// dlib finds the face (HOG detector on the face doubled in size, or the box of
// the aligned template when it finds none), places its five landmarks and cuts
// the 150x150 chip its network was trained on, as its own examples do.
#include <dlib/dnn.h>
#include "dlib_face_net.h"
#include <dlib/image_io.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

#include <iostream>
#include <string>

using namespace dlib;

static void print_row(const matrix<float, 0, 1>& e) {
    for (long i = 0; i < e.size(); ++i) std::cout << (i ? " " : "") << e(i);
}

int main(int argc, char** argv) {
    static facegate_dlib::Models m;
    if (!facegate_dlib::load_models(argc, argv, "dlib_embed MODELS_DIR < paths.txt > embeddings.tsv", m))
        return 2;
    auto& [detector, landmarks, net] = m;
    std::cout.precision(7);

    std::string path;
    while (std::getline(std::cin, path)) {
        if (path.empty()) continue;
        matrix<rgb_pixel> img;
        if (!facegate_dlib::read_image(path, img)) continue;
        matrix<rgb_pixel> big = img;
        pyramid_up(big);
        std::vector<rectangle> faces = detector(big);
        rectangle box;
        if (faces.empty()) {
            // The aligned template puts the face in the middle 80 % of the image.
            box = rectangle(big.nc() / 10, big.nr() / 10, big.nc() * 9 / 10, big.nr() * 9 / 10);
        } else {
            box = facegate_dlib::largest(faces);
        }
        full_object_detection shape = landmarks(big, box);
        matrix<rgb_pixel> chip;
        extract_image_chip(big, get_face_chip_details(shape, 150, 0.25), chip);
        matrix<rgb_pixel> mirror;
        flip_image_left_right(chip, mirror);
        std::vector<matrix<rgb_pixel>> batch{chip, mirror};
        std::vector<matrix<float, 0, 1>> out = net(batch);
        std::cout << path << "\t";
        print_row(out[0]);
        std::cout << "\t";
        print_row(out[1]);
        std::cout << "\n";
    }
    return 0;
}
