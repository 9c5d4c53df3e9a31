#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Regenerates the Swift code of Proto/**/*.proto into Sources/JesterControlPlaneGRPC/Generated. The generated
# files are committed, so a build needs neither protoc nor the plugins; run this after changing a .proto file.
#
# Needs protoc (Debian: protobuf-compiler) and builds the two plugins from the package's own dependencies
# (swift-protobuf's protoc-gen-swift, grpc-swift-protobuf's protoc-gen-grpc-swift-2) in a scratch directory of
# their own; the first build takes about ten minutes.
set -eu
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc is missing: apt-get install protobuf-compiler" >&2; exit 1; }
scratch=.build/protoc-plugins
swift build --scratch-path "$scratch" --product protoc-gen-swift
swift build --scratch-path "$scratch" --product protoc-gen-grpc-swift-2
bin=$(swift build --scratch-path "$scratch" --show-bin-path)
out=Sources/JesterControlPlaneGRPC/Generated
mkdir -p "$out"
rm -f "$out"/*.swift
protoc --proto_path=Proto \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --swift_out="$out" --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
    --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
    --grpc-swift-2_out="$out" --grpc-swift-2_opt=Visibility=Public,FileNaming=PathToUnderscores,Client=true,Server=true \
    Proto/jester/controlplane/v1/snapshot_stream.proto
echo "generated:"; ls "$out"
