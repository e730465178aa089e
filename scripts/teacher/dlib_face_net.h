// dlib's face recognition ResNet as a type (dlib_face_recognition_resnet_model_v1.dat:
// 29 convolutions, 150x150 RGB input, 128-d output), shared by the teacher
// tool (scripts/teacher/dlib_embed.cpp) and the photo-to-decision peer
// (bench/dlib_photo.cpp).
#pragma once
#include <dlib/dnn.h>
#include <dlib/image_io.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>

#include <iostream>
#include <string>

namespace facegate_dlib {
using namespace dlib;

// The network's type must match the serialised model layer for layer: a
// ResNet with 29 convolutions, 150x150 RGB input, 128-d output.
template <int filters, template <typename> class norm, int stride, typename input>
using conv_pair = norm<con<filters, 3, 3, 1, 1, relu<norm<con<filters, 3, 3, stride, stride, input>>>>>;

template <int filters, typename input>
using res_block = relu<add_prev1<conv_pair<filters, affine, 1, tag1<input>>>>;

template <int filters, typename input>
using res_block_down =
    relu<add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<conv_pair<filters, affine, 2, tag1<input>>>>>>>;

template <typename input> using stage0 = res_block_down<256, input>;
template <typename input> using stage1 = res_block<256, res_block<256, res_block_down<256, input>>>;
template <typename input> using stage2 = res_block<128, res_block<128, res_block_down<128, input>>>;
template <typename input>
using stage3 = res_block<64, res_block<64, res_block<64, res_block_down<64, input>>>>;
template <typename input> using stage4 = res_block<32, res_block<32, res_block<32, input>>>;

using face_net = loss_metric<fc_no_bias<128, avg_pool_everything<stage0<stage1<stage2<stage3<stage4<
    max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

// What both tools load: the HOG face detector, the 5-point landmark model
// and the network, from MODELS_DIR (the only argument).
struct Models {
    frontal_face_detector detector = get_frontal_face_detector();
    shape_predictor landmarks;
    face_net net;
};

// Loads the models from the directory argv names; false (after printing
// `usage`) when the arguments are not one directory.
inline bool load_models(int argc, char** argv, const char* usage, Models& m) {
    if (argc != 2) {
        std::cerr << "usage: " << usage << "\n";
        return false;
    }
    const std::string dir = argv[1];
    deserialize(dir + "/shape_predictor_5_face_landmarks.dat") >> m.landmarks;
    deserialize(dir + "/dlib_face_recognition_resnet_model_v1.dat") >> m.net;
    return true;
}

// Decodes `path` into `img`; on failure prints `path<TAB>error<TAB>why`
// (both tools' error line) and returns false.
inline bool read_image(const std::string& path, matrix<rgb_pixel>& img) {
    try {
        load_image(img, path);
        return true;
    } catch (const std::exception& e) {
        std::cout << path << "\terror\t" << e.what() << "\n";
        return false;
    }
}

// The largest of the detections (at least one).
inline rectangle largest(const std::vector<rectangle>& faces) {
    rectangle box = faces[0];
    for (const auto& f : faces)
        if (f.area() > box.area()) box = f;
    return box;
}

}  // namespace facegate_dlib
