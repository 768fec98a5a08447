// cpp_detect MODEL PICTURE...: the gflv2 C++ API (detector.hpp) as a service would use it: one detector per
// thread (Detector::clone shares the loaded model), pictures handed over encoded, errors as gflv2::Error.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gflv2/detector.hpp>

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: cpp_detect MODEL PICTURE...\n");
    return 2;
  }
  try {
    gflv2::DetectorOptions options;
    options.intra_op_threads = 1;
    gflv2::Detector detector(argv[1], options);
    std::vector<std::vector<uint8_t>> files;
    for (int i = 2; i < argc; ++i) files.push_back(read_file(argv[i]));

    // the pictures split between two threads, each with its own clone of the detector
    std::vector<gflv2::Detections> results(files.size());
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < 2; ++t) {
      workers.emplace_back([&, t, worker = detector.clone()]() mutable {
        for (std::size_t i = t; i < files.size(); i += 2) {
          results[i] = worker.detect(gflv2::ImageView::encoded(files[i].data(), files[i].size()));
        }
      });
    }
    for (auto& w : workers) w.join();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

    std::size_t total = 0;
    for (const auto& r : results) total += r.size();
    std::printf("cpp_detect: gflv2 %s, %zu detections on %zu pictures in %.1f ms\n", gflv2_version(), total,
                files.size(), ms);
    for (std::size_t i = 0; i < results.size(); ++i) {
      std::printf("  %s: %zu detections", argv[i + 2], results[i].size());
      if (!results[i].empty()) {
        const auto& d = results[i].front();
        std::printf(", best %s %.3f [%.1f, %.1f, %.1f, %.1f]", detector.class_names().at(d.label).c_str(), d.score,
                    d.x1, d.y1, d.x2, d.y2);
      }
      std::printf("\n");
    }
  } catch (const gflv2::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
