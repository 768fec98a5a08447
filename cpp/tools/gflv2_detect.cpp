// gflv2-detect MODEL IMAGE... [--json OUT] [--draw DIR] [--threads N]
//
// Runs the C++ runtime on pictures: MODEL is an exported ONNX or a TensorRT engine (with <engine>.json beside
// it). --threads N runs N worker threads, each with its own Detector clone sharing the model (pictures are
// dealt round-robin; each worker uses one ONNX Runtime intra-op thread unless --intra-op-threads says
// otherwise). --json writes {"model", "images": [{"file", "width", "height", "detections": [...]}]}; --draw
// writes each picture with its boxes to DIR. Exit status: 0 on success, 1 when a picture failed, 2 when the
// model cannot be loaded.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "gflv2/detector.hpp"

namespace {

struct Item {
  std::string file;
  int width = 0, height = 0;
  gflv2::Detections detections;
  std::string error;
};

void draw(cv::Mat& image, const gflv2::Detections& dets, const std::vector<std::string>& names, double min_score) {
  for (const auto& d : dets) {
    if (d.score < min_score) continue;
    const cv::Scalar color((d.label * 67) % 256, (d.label * 151 + 80) % 256, (d.label * 29 + 160) % 256);
    cv::rectangle(image, cv::Point2f(d.x1, d.y1), cv::Point2f(d.x2, d.y2), color, 2);
    const std::string label = (d.label < static_cast<int>(names.size()) ? names[d.label] : std::to_string(d.label)) +
                              " " + std::to_string(d.score).substr(0, 4);
    cv::putText(image, label, cv::Point2f(d.x1, std::max(d.y1 - 3.f, 10.f)), cv::FONT_HERSHEY_SIMPLEX, 0.45, color, 1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Detect objects in pictures with a GFLV2 model (exported ONNX or TensorRT engine)"};
  std::string model, json_out, draw_dir, device = "cpu";
  std::vector<std::string> images;
  int threads = 1, intra_op = 1;
  double draw_score = 0.3;
  app.add_option("MODEL", model, "exported ONNX, or TensorRT engine with <engine>.json beside it")->required();
  app.add_option("IMAGE", images, "picture files")->required();
  app.add_option("--json", json_out, "write all detections to this JSON file");
  app.add_option("--draw", draw_dir, "write each picture with its boxes into this folder");
  app.add_option("--threads", threads, "worker threads, each with its own Detector clone")->check(CLI::Range(1, 256));
  app.add_option("--intra-op-threads", intra_op, "ONNX Runtime intra-op threads per worker (0: its choice)")->check(CLI::Range(0, 256));
  app.add_option("--device", device, "cpu, cuda or cuda:N");
  app.add_option("--draw-score", draw_score, "minimum score of drawn boxes");
  CLI11_PARSE(app, argc, argv);

  std::vector<gflv2::Detector> workers;
  try {
    gflv2::DetectorOptions options;
    options.intra_op_threads = intra_op;
    options.device = device;
    workers.emplace_back(model, options);
    for (int t = 1; t < threads; ++t) workers.push_back(workers[0].clone());
  } catch (const gflv2::Error& e) {
    std::cerr << "gflv2-detect: " << e.what() << "\n";
    return 2;
  }
  if (!draw_dir.empty()) std::filesystem::create_directories(draw_dir);
  const auto& names = workers[0].class_names();

  std::vector<Item> items(images.size());
  std::atomic<std::size_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  auto work = [&](gflv2::Detector& detector) {
    for (std::size_t i = next++; i < images.size(); i = next++) {
      Item& item = items[i];
      item.file = images[i];
      try {
        if (!std::filesystem::is_regular_file(images[i])) throw gflv2::Error(gflv2::Status::kImage, "picture not found: " + images[i]);
        cv::Mat picture = cv::imread(images[i], cv::IMREAD_COLOR);
        if (picture.empty()) throw gflv2::Error(gflv2::Status::kImage, images[i] + " is not a picture OpenCV reads");
        item.width = picture.cols;
        item.height = picture.rows;
        item.detections = detector.detect(gflv2::ImageView::bgr(picture.data, picture.rows, picture.cols, picture.step));
        if (!draw_dir.empty()) {
          draw(picture, item.detections, names, draw_score);
          cv::imwrite((std::filesystem::path(draw_dir) / std::filesystem::path(images[i]).filename()).string(), picture);
        }
      } catch (const std::exception& e) {
        item.error = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back(work, std::ref(w));
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  int failed = 0;
  nlohmann::json report = {{"model", model}, {"threads", threads}, {"images", nlohmann::json::array()}};
  for (const Item& item : items) {
    nlohmann::json entry = {{"file", item.file}, {"width", item.width}, {"height", item.height}};
    if (!item.error.empty()) {
      ++failed;
      entry["error"] = item.error;
      std::cerr << "gflv2-detect: " << item.error << "\n";
    }
    nlohmann::json dets = nlohmann::json::array();
    for (const auto& d : item.detections) {
      dets.push_back({{"box", {d.x1, d.y1, d.x2, d.y2}}, {"score", d.score}, {"label", d.label},
                      {"class_name", d.label < static_cast<int>(names.size()) ? names[d.label] : ""}});
    }
    entry["detections"] = std::move(dets);
    report["images"].push_back(std::move(entry));
    if (item.error.empty()) std::cout << item.file << ": " << item.detections.size() << " detections\n";
  }
  std::cout << images.size() << " picture(s) in " << seconds << " s with " << threads << " thread(s)\n";
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << report.dump(1) << "\n";
    if (!out) {
      std::cerr << "gflv2-detect: cannot write " << json_out << "\n";
      return 1;
    }
  }
  return failed ? 1 : 0;
}
