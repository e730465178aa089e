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
#include <dlib/image_io.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

#include <iostream>
#include <string>

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

static void print_row(const matrix<float, 0, 1>& e) {
    for (long i = 0; i < e.size(); ++i) std::cout << (i ? " " : "") << e(i);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: dlib_embed MODELS_DIR < paths.txt > embeddings.tsv\n";
        return 2;
    }
    const std::string dir = argv[1];
    frontal_face_detector detector = get_frontal_face_detector();
    shape_predictor landmarks;
    face_net net;
    deserialize(dir + "/shape_predictor_5_face_landmarks.dat") >> landmarks;
    deserialize(dir + "/dlib_face_recognition_resnet_model_v1.dat") >> net;
    std::cout.precision(7);

    std::string path;
    while (std::getline(std::cin, path)) {
        if (path.empty()) continue;
        matrix<rgb_pixel> img;
        try {
            load_image(img, path);
        } catch (const std::exception& e) {
            std::cout << path << "\terror\t" << e.what() << "\n";
            continue;
        }
        matrix<rgb_pixel> big = img;
        pyramid_up(big);
        std::vector<rectangle> faces = detector(big);
        rectangle box;
        if (faces.empty()) {
            // The aligned template puts the face in the middle 80 % of the image.
            box = rectangle(big.nc() / 10, big.nr() / 10, big.nc() * 9 / 10, big.nr() * 9 / 10);
        } else {
            box = faces[0];
            for (const auto& f : faces)
                if (f.area() > box.area()) box = f;
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
