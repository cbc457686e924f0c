package cri

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageService is the CRI ImageService of a Server. An image is present
// when Config.Images maps it or when it was "pulled": a pull fetches
// nothing (the placeholder runs what no binary stands for), it records the
// reference.
type imageService struct {
	runtimeapi.UnimplementedImageServiceServer
	s *Server
}

// imageID is an image's stable id, derived from its reference.
func imageID(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// resolveImage names the reference of an image spec: the kubelet passes the
// image id it got from ImageStatus or PullImage, and the reference the pod
// names as UserSpecifiedImage. Callers hold s.mu.
func (s *Server) resolveImage(spec *runtimeapi.ImageSpec) string {
	if u := spec.GetUserSpecifiedImage(); u != "" {
		return u
	}
	ref := spec.GetImage()
	if _, ok := s.cfg.Images[ref]; ok || s.pulled[ref] {
		return ref
	}
	if strings.HasPrefix(ref, "sha256:") {
		for _, known := range s.knownImages() {
			if imageID(known) == ref || strings.TrimPrefix(imageID(known), "sha256:") == strings.TrimPrefix(ref, "sha256:") {
				return known
			}
		}
	}
	return ref
}

// knownImages are the present images' references; callers hold s.mu.
func (s *Server) knownImages() []string {
	seen := map[string]bool{}
	for ref := range s.cfg.Images {
		seen[ref] = true
	}
	for ref := range s.pulled {
		seen[ref] = true
	}
	out := make([]string, 0, len(seen))
	for ref := range seen {
		out = append(out, ref)
	}
	sort.Strings(out)
	return out
}

func (s *Server) image(ref string) *runtimeapi.Image {
	// Clients reject an image without a size: a pulled one (nothing on
	// disk) claims a page.
	img := &runtimeapi.Image{Id: imageID(ref), RepoTags: []string{ref}, Spec: &runtimeapi.ImageSpec{Image: ref}, Size: 4096}
	if bin, ok := s.cfg.Images[ref]; ok {
		if st, err := os.Stat(bin); err == nil {
			img.Size = uint64(st.Size())
		}
	}
	return img
}

func (i *imageService) ListImages(_ context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	s := i.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*runtimeapi.Image{}
	want := req.GetFilter().GetImage().GetImage()
	for _, ref := range s.knownImages() {
		if want == "" || want == ref || want == imageID(ref) {
			out = append(out, s.image(ref))
		}
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

func (i *imageService) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	s := i.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := s.resolveImage(req.GetImage())
	if _, ok := s.cfg.Images[ref]; !ok && !s.pulled[ref] {
		return &runtimeapi.ImageStatusResponse{}, nil // CRI: an unknown image is a nil image, not an error
	}
	return &runtimeapi.ImageStatusResponse{Image: s.image(ref)}, nil
}

func (i *imageService) PullImage(_ context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	s := i.s
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, status.Error(codes.InvalidArgument, "no image to pull")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cfg.Images[ref]; !ok && !s.pulled[ref] {
		s.pulled[ref] = true
		s.saveRuntime()
	}
	return &runtimeapi.PullImageResponse{ImageRef: imageID(ref)}, nil
}

func (i *imageService) RemoveImage(_ context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	s := i.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := s.resolveImage(req.GetImage())
	if s.pulled[ref] {
		delete(s.pulled, ref)
		s.saveRuntime()
	}
	// A mapped image is part of the VM: removing it is a no-op (CRI: removing
	// an absent image is not an error either).
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the filesystem of StateDir, where a runtime keeps its
// images: the kubelet's eviction manager and stats read it (and look the
// mountpoint up with cadvisor), so the figures are real.
func (i *imageService) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	fs, err := fsUsage(i.s.cfg.StateDir)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s: %v", i.s.cfg.StateDir, err)
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{fs}, ContainerFilesystems: []*runtimeapi.FilesystemUsage{fs}}, nil
}

func fsUsage(dir string) (*runtimeapi.FilesystemUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, err
	}
	return &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: mountpoint(dir)},
		UsedBytes:  &runtimeapi.UInt64Value{Value: (st.Blocks - st.Bfree) * uint64(st.Bsize)},
		InodesUsed: &runtimeapi.UInt64Value{Value: st.Files - st.Ffree},
	}, nil
}

// mountpoint is the mount point of the filesystem holding dir: the longest
// mount point in /proc/self/mountinfo that contains it.
func mountpoint(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return abs
	}
	defer f.Close()
	best := "/"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
