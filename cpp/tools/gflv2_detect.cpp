// gflv2-detect MODEL IMAGE... [--json OUT] [--draw DIR] [--threads N]
//
// Runs the C++ runtime on pictures: MODEL is an exported ONNX or a TensorRT engine (with <engine>.json beside
// it). --threads N runs N worker threads, each with its own Detector clone sharing the model (pictures are
// dealt round-robin; each worker uses one ONNX Runtime intra-op thread unless --intra-op-threads says
// otherwise). --json writes {"model", "threads", "images": [{"file", "width", "height", "detections": [...]}]}
// atomically (a temporary file renamed into place: never a partial or empty file); file names that are not
// UTF-8 are written with U+FFFD for the bytes that are not. --draw writes each picture with its boxes to DIR.
// Pictures are decoded by the library's own rule (src/image.cpp: a truncated JPEG is refused, as in Python).
// Both outputs are checked before any detection. Exit status: 0 on success, 1 when a picture failed (its entry
// in the JSON says why), 2 for a usage error, an output that cannot be written or a model that cannot be
// loaded: one line "error: ..." on stderr; no exception leaves main.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "gflv2/detector.hpp"
#include "image.hpp"

namespace {

namespace fs = std::filesystem;

// A user mistake or an unusable output: main prints "error: <what>" and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Item {
  std::string file;
  int width = 0, height = 0;
  gflv2::Detections detections;
  std::string error;
};

std::string class_name(const std::vector<std::string>& names, int32_t label) {
  return label >= 0 && static_cast<std::size_t>(label) < names.size() ? names[label] : std::to_string(label);
}

void draw(cv::Mat& image, const gflv2::Detections& dets, const std::vector<std::string>& names, double min_score) {
  for (const auto& d : dets) {
    if (d.score < min_score) continue;
    const int hue = std::abs(d.label);
    const cv::Scalar color((hue * 67) % 256, (hue * 151 + 80) % 256, (hue * 29 + 160) % 256);
    cv::rectangle(image, cv::Point2f(d.x1, d.y1), cv::Point2f(d.x2, d.y2), color, 2);
    const std::string label = class_name(names, d.label) + " " + std::to_string(d.score).substr(0, 4);
    cv::putText(image, label, cv::Point2f(d.x1, std::max(d.y1 - 3.f, 10.f)), cv::FONT_HERSHEY_SIMPLEX, 0.45, color, 1);
  }
}

// Create and remove a file in `folder`: permission bits say nothing for root, on /proc or on read-only mounts.
void probe_folder(const fs::path& folder, const std::string& what) {
  std::string pattern = (folder / ".gflv2-detect-write-check.XXXXXX").string();
  const int fd = mkstemp(pattern.data());
  if (fd < 0) throw UsageError("cannot write " + what + ": no file can be created in " + folder.string());
  close(fd);
  std::remove(pattern.c_str());
}

// The deepest folder of `path` that exists (the one a writer would create the rest in).
fs::path existing_ancestor(fs::path path) {
  std::error_code ec;
  while (!fs::exists(path, ec) && path.has_parent_path() && path != path.parent_path()) path = path.parent_path();
  return path.empty() ? fs::path(".") : path;
}

// --json OUT: a file that can be created or replaced (missing folders are made when it is written).
void check_json_output(const fs::path& out) {
  std::error_code ec;
  if (fs::is_directory(out, ec)) throw UsageError("--json " + out.string() + " is a folder: give a file name");
  const fs::path folder = existing_ancestor(out.has_parent_path() ? out.parent_path() : fs::path("."));
  if (!fs::is_directory(folder, ec)) throw UsageError("cannot write --json " + out.string() + ": " + folder.string() + " is a file, not a folder");
  probe_folder(folder, "--json " + out.string());
}

// --draw DIR: a folder that can take files (made later, once the model loaded) and holds no input picture.
void check_draw_folder(const fs::path& dir, const std::vector<std::string>& images) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) throw UsageError("--draw " + dir.string() + " is a file: give a folder");
  const fs::path folder = existing_ancestor(dir);
  if (!fs::is_directory(folder, ec)) throw UsageError("cannot write --draw " + dir.string() + ": " + folder.string() + " is a file, not a folder");
  probe_folder(folder, "--draw " + dir.string());
  for (const std::string& image : images) {
    const fs::path drawn = dir / fs::path(image).filename();
    if (fs::exists(drawn, ec) && fs::equivalent(drawn, image, ec)) {
      throw UsageError("--draw " + dir.string() + " would overwrite the input picture " + image + ": choose another folder");
    }
  }
}

// Write `text` to `out` through a temporary file in the same folder renamed onto it: `out` is complete or untouched.
void write_atomically(const fs::path& out, const std::string& text) {
  std::error_code ec;
  if (out.has_parent_path()) fs::create_directories(out.parent_path(), ec);
  std::string tmp = (out.has_parent_path() ? out.parent_path() : fs::path(".")).string() + "/." +
                    out.filename().string() + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) throw UsageError("cannot write " + out.string() + ": cannot create a file beside it");
  close(fd);
  bool ok = false;
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    file << text;
    file.flush();
    ok = static_cast<bool>(file);
  }
  if (!ok || std::rename(tmp.c_str(), out.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw UsageError("cannot write " + out.string() + " (disk full or folder removed?)");
  }
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw gflv2::Error(gflv2::Status::kImage, "no such picture file");
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw gflv2::Error(gflv2::Status::kImage, "cannot read the file");
  return bytes;
}

int run(int argc, char** argv) {
  CLI::App app{"Detect objects in pictures with a GFLV2 model (exported ONNX or TensorRT engine)"};
  std::string model, json_out, draw_dir, device;
  std::vector<std::string> images;
  int threads = 1, intra_op = 1;
  double draw_score = 0.3;
  app.add_option("MODEL", model, "exported ONNX, or TensorRT engine with <engine>.json beside it")->required();
  app.add_option("IMAGE", images, "picture files")->required();
  app.add_option("--json", json_out, "write all detections to this JSON file");
  app.add_option("--draw", draw_dir, "write each picture with its boxes into this folder");
  app.add_option("--threads", threads, "worker threads, each with its own Detector clone")->check(CLI::Range(1, 256));
  app.add_option("--intra-op-threads", intra_op, "ONNX Runtime intra-op threads per worker (0: its choice)")->check(CLI::Range(0, 256));
  app.add_option("--device", device, "cpu, cuda or cuda:N (default: cpu for an ONNX, cuda:0 for an engine)");
  app.add_option("--draw-score", draw_score, "minimum score of drawn boxes");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    throw UsageError(std::string(e.what()) + " (see --help)");
  }

  // outputs first: nothing is detected for a result that could not be written
  if (!json_out.empty()) check_json_output(json_out);
  if (!draw_dir.empty()) check_draw_folder(draw_dir, images);

  std::vector<gflv2::Detector> workers;
  try {
    gflv2::DetectorOptions options;
    options.intra_op_threads = intra_op;
    options.device = device;
    workers.emplace_back(model, options);
    for (int t = 1; t < threads; ++t) workers.push_back(workers[0].clone());
  } catch (const gflv2::Error& e) {
    throw UsageError(e.what());
  }
  const auto& names = workers[0].class_names();
  if (!draw_dir.empty()) {  // only now that there is something to write (as gflv2_deploy/atomic.py check_writable)
    std::error_code ec;
    fs::create_directories(draw_dir, ec);
    if (ec) throw UsageError("cannot create --draw folder " + draw_dir + ": " + ec.message());
  }

  std::vector<Item> items(images.size());
  std::atomic<std::size_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  auto work = [&](gflv2::Detector& detector) noexcept {
    for (std::size_t i = next++; i < images.size(); i = next++) {
      Item& item = items[i];
      item.file = images[i];
      try {
        const std::vector<uint8_t> bytes = read_bytes(images[i]);
        cv::Mat picture = gflv2::image_to_mat(gflv2::ImageView::encoded(bytes.data(), bytes.size()), i);
        item.width = picture.cols;
        item.height = picture.rows;
        item.detections = detector.detect(gflv2::ImageView::bgr(picture.data, picture.rows, picture.cols, picture.step));
        if (!draw_dir.empty()) {
          draw(picture, item.detections, names, draw_score);
          const fs::path drawn = fs::path(draw_dir) / fs::path(images[i]).filename();
          if (!cv::imwrite(drawn.string(), picture)) throw std::runtime_error("cannot write " + drawn.string());
        }
      } catch (const std::exception& e) {
        item.error = images[i] + ": " + e.what();
      } catch (...) {
        item.error = images[i] + ": unknown failure";
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
      std::cerr << "error: " << item.error << "\n";
    }
    nlohmann::json dets = nlohmann::json::array();
    for (const auto& d : item.detections) {
      dets.push_back({{"box", {d.x1, d.y1, d.x2, d.y2}}, {"score", d.score}, {"label", d.label},
                      {"class_name", class_name(names, d.label)}});
    }
    entry["detections"] = std::move(dets);
    report["images"].push_back(std::move(entry));
    if (item.error.empty()) std::cout << item.file << ": " << item.detections.size() << " detections\n";
  }
  std::cout << images.size() << " picture(s) in " << seconds << " s with " << threads << " thread(s)\n";
  if (!json_out.empty()) {
    // names are bytes on Linux: invalid UTF-8 becomes U+FFFD instead of an exception from dump()
    write_atomically(json_out, report.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "error: unexpected failure\n";
  }
  return 2;
}
